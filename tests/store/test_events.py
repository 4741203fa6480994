"""Event jobs: inserted in the caller's transaction, due at once, with a ULID each."""

from __future__ import annotations

import json
from pathlib import Path

from twisted.trial.unittest import TestCase

from rail.events.model import EVENT_TYPES, Event
from rail.events.subscriptions import NO_SUBSCRIPTIONS, Subscription, Subscriptions
from rail.store.events import insert_events
from rail.store.schema import open_writable


class InsertEventsTests(TestCase):
    def test_rows_are_queued_and_due(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        connection = open_writable(directory)
        self.addCleanup(connection.close)
        events = [
            Event(
                "message.delivered",
                "app",
                "01J0000000000000000000000A",
                "a@example.com",
                {"mx": "mx.example.com"},
            ),
            Event(
                "message.suppressed",
                "app",
                "01J0000000000000000000000A",
                "b@example.com",
                sandbox=True,
            ),
        ]
        connection.execute("BEGIN")
        everything = Subscriptions({"app": Subscription(frozenset(EVENT_TYPES))})
        ids = insert_events(connection, events, 1000.0, everything)
        connection.execute("COMMIT")
        self.assertEqual(len(set(ids)), 2)
        rows = connection.execute(
            "SELECT id, type, recipient, sandbox, details, status, next_attempt_at FROM events"
            " ORDER BY recipient"
        ).fetchall()
        self.assertEqual(
            [(r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]) for r in rows],
            [
                (
                    "message.delivered",
                    "a@example.com",
                    0,
                    {"mx": "mx.example.com"},
                    "queued",
                    1000.0,
                ),
                ("message.suppressed", "b@example.com", 1, {}, "queued", 1000.0),
            ],
        )

    def test_only_subscribed_events_are_stored(self) -> None:
        """A client that picked no types gets no rows; another gets only its types."""
        directory = Path(self.mktemp())
        directory.mkdir()
        connection = open_writable(directory)
        self.addCleanup(connection.close)
        events = [
            Event("message.delivered", "quiet", "M", "a@x"),
            Event("message.delivered", "app", "M", "a@x"),
            Event("message.deferred", "app", "M", "a@x"),
        ]
        picked = Subscriptions({"app": Subscription(frozenset({"message.delivered"}))})
        self.assertEqual(insert_events(connection, events, 1.0, NO_SUBSCRIPTIONS), [])
        self.assertEqual(len(insert_events(connection, events, 1.0, picked)), 1)
        self.assertEqual(
            connection.execute("SELECT client, type FROM events").fetchall(),
            [("app", "message.delivered")],
        )

    def test_unknown_type_is_refused(self) -> None:
        with self.assertRaises(ValueError):
            Event("message.opened", "app", "x")


class MigrationTests(TestCase):
    def test_from_version_6(self) -> None:
        """A version 6 queue gains the events table and keeps its messages."""
        import sqlite3

        from rail.store.schema import SCHEMA_VERSION, database_path
        from tests.store.oldschemas import schema_v6

        directory = Path(self.mktemp())
        directory.mkdir()
        old = sqlite3.connect(database_path(directory))
        old.executescript(schema_v6())
        old.execute(
            "INSERT INTO messages VALUES ('m', 'app', 'a@x', 'api', 0, 0, 1.0, 1, 'h', x'00')"
        )
        old.commit()
        old.execute("PRAGMA user_version=6")
        old.close()
        connection = open_writable(directory)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)
        self.assertEqual(connection.execute("SELECT id FROM messages").fetchall(), [("m",)])
        self.assertEqual(connection.execute("SELECT count(*) FROM events").fetchone()[0], 0)
