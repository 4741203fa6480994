"""rail.workers.plan: how many workers, which descriptors, who runs the once-per-host work."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.config.workers import sqlite_refusal
from rail.workers.plan import (
    FIRST_SOCKET_FD,
    WorkerSpec,
    copies,
    decode,
    descriptor_plan,
    encode,
    worker_count,
)


class WorkerCountTests(SynchronousTestCase):
    def test_number(self) -> None:
        """A number is taken as it is, whatever the cores."""
        self.assertEqual(worker_count(3, 2), 3)
        self.assertEqual(worker_count(1, 64), 1)

    def test_auto(self) -> None:
        """``auto`` is one worker per core; one when the count of cores is unknown."""
        self.assertEqual(worker_count("auto", 2), 2)
        self.assertEqual(worker_count("auto", None), 1)

    def test_invalid(self) -> None:
        """Zero, negative numbers, booleans and other words are refused."""
        for setting in (0, -1, True, "two"):
            with self.assertRaises(ValueError):
                worker_count(setting, 2)  # type: ignore[arg-type]


class SQLiteRefusalTests(SynchronousTestCase):
    def test_one_worker_is_fine_on_either_backend(self) -> None:
        """One process may use SQLite (the default) or PostgreSQL."""
        self.assertIsNone(sqlite_refusal(1, "sqlite"))
        self.assertIsNone(sqlite_refusal(1, "postgresql"))
        self.assertIsNone(sqlite_refusal(4, "postgresql"))

    def test_several_workers_on_sqlite(self) -> None:
        """Several workers on SQLite are refused with one line naming the setting to
        change."""
        refusal = sqlite_refusal(2, "sqlite")
        assert refusal is not None
        self.assertTrue(refusal.startswith("2 worker processes"), refusal)
        self.assertIn("storage.backend: postgresql", refusal)
        self.assertNotIn("\n", refusal)


class DescriptorPlanTests(SynchronousTestCase):
    names = ["submission", "https", "dns", "dns-udp"]

    def test_shared(self) -> None:
        """With one shared socket per listener every worker gets copy 0, from descriptor 4
        on, in the order given."""
        expected = {
            FIRST_SOCKET_FD: ("submission", 0),
            FIRST_SOCKET_FD + 1: ("https", 0),
            FIRST_SOCKET_FD + 2: ("dns", 0),
            FIRST_SOCKET_FD + 3: ("dns-udp", 0),
        }
        self.assertEqual(descriptor_plan(self.names, 0, "shared"), expected)
        self.assertEqual(descriptor_plan(self.names, 3, "shared"), expected)
        self.assertEqual(copies("shared", 4), 1)

    def test_reuseport(self) -> None:
        """With reuseport, worker k gets copy k of each socket, at the same descriptors."""
        plan = descriptor_plan(self.names, 2, "reuseport")
        self.assertEqual(sorted(plan), [4, 5, 6, 7])
        self.assertEqual({copy for _, copy in plan.values()}, {2})
        self.assertEqual(copies("reuseport", 4), 4)


class WorkerSpecTests(SynchronousTestCase):
    def test_singletons(self) -> None:
        """Only worker 0 runs what must run once per host."""
        self.assertTrue(WorkerSpec(index=0, count=2).runs_singletons)
        self.assertFalse(WorkerSpec(index=1, count=2).runs_singletons)

    def test_round_trip(self) -> None:
        """What the parent encodes in RAIL_WORKER, the worker decodes."""
        spec = WorkerSpec(index=1, count=3, fds={"https": 4, "dns-udp": 5}, peers="/tmp/p")
        self.assertEqual(decode(encode(spec)), spec)

    def test_malformed(self) -> None:
        """Anything else is a ValueError naming the variable."""
        for text in (
            "",
            "[]",
            '{"index": 0}',
            '{"index": 2, "count": 2, "fds": {}}',
            '{"index": 0, "count": 1, "fds": {"smtp": 4}}',
            '{"index": 0, "count": 1, "fds": {"https": "4"}}',
            '{"index": true, "count": 2, "fds": {}}',
        ):
            with self.assertRaises(ValueError) as raised:
                decode(text)
            self.assertIn("RAIL_WORKER", str(raised.exception))
