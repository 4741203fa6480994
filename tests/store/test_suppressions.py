"""The suppression list's storage: listed lower-cased, first evidence kept, removable."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import TestCase

from rail.store import suppressions as sup
from rail.store.messagemeta import insert_meta, read_meta
from rail.store.model import MessageMeta
from rail.store.schema import open_writable
from rail.store.suppressions import Suppression, suppressed, unsuppress

# Not imported by name: trial reads a module-level ``suppress`` as its warning filters.


def _connection(case: TestCase):  # type: ignore[no-untyped-def]
    directory = Path(case.mktemp())
    directory.mkdir()
    connection = open_writable(directory)
    case.addCleanup(connection.close)
    return connection


class SuppressionTests(TestCase):
    def test_lookup_is_case_insensitive_and_per_client(self) -> None:
        """A bounced ``Bob@X.example`` suppresses ``bob@x.example`` for that client only."""
        connection = _connection(self)
        sup.suppress(connection, [Suppression("app", "Bob@X.example", "hard_bounce", "rcpt", 1.0)])
        found = suppressed(connection, "app", ["bob@x.example", "carol@x.example"])
        self.assertEqual(list(found), ["bob@x.example"])
        self.assertEqual(found["bob@x.example"].reason, "hard_bounce")
        self.assertEqual(suppressed(connection, "other", ["bob@x.example"]), {})

    def test_first_evidence_is_kept(self) -> None:
        """A later complaint does not overwrite the bounce that listed the address."""
        connection = _connection(self)
        sup.suppress(connection, [Suppression("app", "a@x", "hard_bounce", "dsn", 1.0, "M1")])
        sup.suppress(connection, [Suppression("app", "a@x", "complaint", "arf", 2.0, "M2")])
        entry = suppressed(connection, "app", ["a@x"])["a@x"]
        self.assertEqual(
            (entry.reason, entry.message_id, entry.created_at), ("hard_bounce", "M1", 1.0)
        )

    def test_unsuppress(self) -> None:
        """Removing an address says whether it was listed, and it is no longer found."""
        connection = _connection(self)
        sup.suppress(connection, [Suppression("app", "a@x", "manual", "api", 1.0)])
        self.assertTrue(unsuppress(connection, "app", "A@X"))
        self.assertFalse(unsuppress(connection, "app", "a@x"))
        self.assertEqual(suppressed(connection, "app", ["a@x"]), {})


class MessageMetaTests(TestCase):
    def test_round_trip_and_empty_meta_costs_no_row(self) -> None:
        """Meta is read back as stored; a message with none has no row."""
        connection = _connection(self)
        connection.execute(
            "INSERT INTO messages VALUES ('m1', 'app', 'a@x', 'api', 0, 0, 1.0, 1, 'h', x'00')"
        )
        connection.execute(
            "INSERT INTO messages VALUES ('m2', 'app', 'a@x', 'api', 0, 0, 1.0, 1, 'h', x'00')"
        )
        meta = MessageMeta(request_id="r1", tag="welcome", metadata={"user": "42"})
        insert_meta(connection, "m1", meta)
        insert_meta(connection, "m2", MessageMeta())
        self.assertEqual(read_meta(connection, ["m1", "m2"]), {"m1": meta})
