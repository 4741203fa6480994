"""SOA serials: unchanged content keeps its serial, changed content gets a larger one,
also after a restart (the state file) and without it (the clock)."""

from __future__ import annotations

import json
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.dns.serial import SerialEntry, SerialFile, next_serial


class NextSerialTests(SynchronousTestCase):
    def test_first(self) -> None:
        """A zone never numbered gets the current unix time."""
        self.assertEqual(next_serial(None, "d1", 1_700_000_000.5), SerialEntry("d1", 1_700_000_000))

    def test_unchanged(self) -> None:
        """The same content keeps its serial, however much time passed."""
        entry = SerialEntry("d1", 1_700_000_000)
        self.assertIs(next_serial(entry, "d1", 1_800_000_000), entry)

    def test_changed_later(self) -> None:
        """Changed content takes the current time when that is larger."""
        entry = SerialEntry("d1", 1_700_000_000)
        self.assertEqual(next_serial(entry, "d2", 1_700_000_100), SerialEntry("d2", 1_700_000_100))

    def test_changed_same_second_or_clock_back(self) -> None:
        """Two changes in one second, or a clock that went back, still increase it."""
        entry = SerialEntry("d1", 1_700_000_000)
        self.assertEqual(next_serial(entry, "d2", 1_700_000_000), SerialEntry("d2", 1_700_000_001))
        self.assertEqual(next_serial(entry, "d2", 1_000), SerialEntry("d2", 1_700_000_001))


class SerialFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = Path(self.mktemp()) / "dns" / "serials.json"

    def test_survives_restart(self) -> None:
        """Serials are read back by a new instance: unchanged zones keep theirs, changed
        ones increase."""
        first = SerialFile(self.path).assign({"a.test": "x", "b.test": "y"}, 1000.0)
        self.assertEqual(first, {"a.test": 1000, "b.test": 1000})
        again = SerialFile(self.path).assign({"a.test": "x", "b.test": "z"}, 1000.0)
        self.assertEqual(again, {"a.test": 1000, "b.test": 1001})
        self.assertEqual(
            json.loads(self.path.read_text())["b.test"], {"digest": "z", "serial": 1001}
        )

    def test_read_only(self) -> None:
        """save=False computes serials but writes nothing (rail dns records)."""
        serials = SerialFile(self.path).assign({"a.test": "x"}, 1000.0, save=False)
        self.assertEqual(serials, {"a.test": 1000})
        self.assertFalse(self.path.exists())

    def test_no_rewrite_when_unchanged(self) -> None:
        """An assignment that changes nothing does not rewrite the file."""
        store = SerialFile(self.path)
        store.assign({"a.test": "x"}, 1000.0)
        before = self.path.stat().st_mtime_ns
        self.path.write_text(self.path.read_text())  # same content, new mtime
        marker = self.path.stat().st_mtime_ns
        store.assign({"a.test": "x"}, 2000.0)
        self.assertEqual(self.path.stat().st_mtime_ns, marker)
        self.assertGreaterEqual(marker, before)

    def test_damaged_file(self) -> None:
        """An unreadable state file costs only a jump to the current time."""
        self.path.parent.mkdir(parents=True)
        self.path.write_text("{not json")
        self.assertEqual(SerialFile(self.path).assign({"a.test": "x"}, 5000.0), {"a.test": 5000})
        self.assertEqual(json.loads(self.path.read_text())["a.test"]["serial"], 5000)

    def test_atomic_write_leaves_no_temporary(self) -> None:
        """The file is replaced by rename; no temporary file is left behind."""
        SerialFile(self.path).assign({"a.test": "x"}, 1000.0)
        self.assertEqual([p.name for p in self.path.parent.iterdir()], ["serials.json"])
