"""Event jobs: inserted in the caller's transaction, due at once, with a ULID each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from rail.events.jobs import EventResult
from rail.events.model import EVENT_TYPES, Event
from rail.events.subscriptions import NO_SUBSCRIPTIONS, Subscription, Subscriptions
from rail.store.events import (
    claim_events,
    event_counts,
    insert_events,
    quarantine_event,
    record_event,
)
from rail.store.messagemeta import insert_meta
from rail.store.model import MessageMeta
from rail.store.purge import purge_step
from rail.store.schema import open_writable
from tests.store.test_contract import open_postgres


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


_EVERYTHING = Subscriptions({"app": Subscription(frozenset(EVENT_TYPES))})


class EventJobTests(TestCase):
    """Claiming, recording, quarantining and purging event jobs (writer-thread functions)."""

    def setUp(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        self.connection = open_writable(directory)
        self.addCleanup(self.connection.close)

    def insert(self, *events: Event, now: float = 1000.0) -> list[str]:
        self.connection.execute("BEGIN")
        ids = insert_events(self.connection, events, now, _EVERYTHING)
        self.connection.execute("COMMIT")
        return ids

    def row(self, event_id: str) -> tuple[object, ...]:
        row = self.connection.execute(
            "SELECT status, attempts, next_attempt_at, last_reply FROM events WHERE id = ?",
            (event_id,),
        ).fetchone()
        return tuple(row)

    def test_claim_reads_meta_and_skips_excluded(self) -> None:
        """A claim hands out due events oldest first with the message's request_id, tag
        and metadata (none: nulls and ``{}``), skipping the excluded and the not yet due."""
        self.connection.execute(
            "INSERT INTO messages VALUES ('M1', 'app', 'a@x', 'api', 0, 0, 1.0, 1, 'h', x'00')"
        )
        insert_meta(self.connection, "M1", MessageMeta("req-1", "welcome", {"user": "42"}))
        first, second = self.insert(
            Event("message.delivered", "app", "M1", "a@x", {"mx": "mx.x"}),
            Event("message.bounced", "app", "M2", "b@x", {"reply": "550"}, sandbox=True),
        )
        later = self.insert(Event("message.expired", "app", "M2"), now=5000.0)
        jobs, bad = claim_events(self.connection, 1000.0, 10, frozenset())
        self.assertEqual(bad, {})
        self.assertEqual([j.id for j in jobs], [first, second])
        self.assertEqual(
            (jobs[0].request_id, jobs[0].tag, dict(jobs[0].metadata), dict(jobs[0].details)),
            ("req-1", "welcome", {"user": "42"}, {"mx": "mx.x"}),
        )
        self.assertEqual(
            (jobs[1].request_id, jobs[1].tag, dict(jobs[1].metadata), jobs[1].sandbox),
            (None, None, {}, True),
        )
        jobs, _ = claim_events(self.connection, 5000.0, 10, frozenset({first}))
        self.assertEqual([j.id for j in jobs], [second, *later])

    def test_record_retry_and_final(self) -> None:
        """A deferred result sets the next attempt; a delivered one is final and a late
        duplicate result cannot undo it; counts follow from the tally."""
        [event_id] = self.insert(Event("message.delivered", "app", "M1", "a@x"))
        self.connection.execute("BEGIN")
        self.assertTrue(
            record_event(
                self.connection, EventResult(event_id, 1001.0, "deferred", "HTTP 503", 1031.0)
            )
        )
        self.assertEqual(self.row(event_id), ("deferred", 1, 1031.0, "HTTP 503"))
        self.assertEqual(claim_events(self.connection, 1030.0, 10, frozenset())[0], [])
        self.assertTrue(
            record_event(self.connection, EventResult(event_id, 1031.0, "delivered", "HTTP 200"))
        )
        self.assertFalse(
            record_event(self.connection, EventResult(event_id, 1032.0, "failed", "late"))
        )
        self.connection.execute("COMMIT")
        self.assertEqual(self.row(event_id), ("delivered", 2, None, "HTTP 200"))
        self.assertEqual(
            event_counts(self.connection),
            {"queued": 0, "deferred": 0, "delivered": 1, "failed": 0},
        )

    def test_unreadable_row_reported_and_quarantined(self) -> None:
        """A row whose details are not a JSON object is reported, not handed out; once
        quarantined it is failed for good and never claimed again."""
        good, damaged = self.insert(
            Event("message.delivered", "app", "M1"), Event("message.delivered", "app", "M2")
        )
        self.connection.execute("UPDATE events SET details = '[1' WHERE id = ?", (damaged,))
        jobs, bad = claim_events(self.connection, 1000.0, 10, frozenset())
        self.assertEqual(
            ([j.id for j in jobs], bad), ([good], {damaged: "stored event details are not JSON"})
        )
        self.assertTrue(quarantine_event(self.connection, damaged, bad[damaged], 1001.0))
        self.assertEqual(
            self.row(damaged), ("failed", 0, None, "quarantined: stored event details are not JSON")
        )
        self.assertFalse(quarantine_event(self.connection, damaged, "again", 1002.0))
        self.assertEqual(
            [j.id for j in claim_events(self.connection, 1e9, 10, frozenset())[0]], [good]
        )

    def test_purge_deletes_final_events_past_the_horizon_in_steps(self) -> None:
        """Retention deletes final events that became final before the record horizon,
        ``limit`` at a time, and leaves pending and recent ones."""
        ids = self.insert(*(Event("message.delivered", "app", f"M{n}") for n in range(5)))
        self.connection.execute("BEGIN")
        for n, event_id in enumerate(ids[:4]):
            record_event(
                self.connection, EventResult(event_id, 2000.0 + n, "delivered", "HTTP 200")
            )
        self.connection.execute("COMMIT")
        first = purge_step(
            self.connection,
            now=9000.0,
            body_before=0.0,
            record_before=2003.0,
            keys_before=0.0,
            limit=2,
            vacuum_pages=0,
        )
        self.assertEqual((first.events, first.more), (2, True))
        second = purge_step(
            self.connection,
            now=9000.0,
            body_before=0.0,
            record_before=2003.0,
            keys_before=0.0,
            limit=2,
            vacuum_pages=0,
        )
        self.assertEqual((second.events, second.more), (1, False))
        left = [r[0] for r in self.connection.execute("SELECT id FROM events ORDER BY id")]
        self.assertEqual(left, [ids[3], ids[4]])
        self.assertEqual(event_counts(self.connection)["delivered"], 1)


class EventJobsMigrationTests(TestCase):
    def test_from_version_9(self) -> None:
        """A version 9 queue gains the retention index and the event tally, counted from
        the events already stored."""
        import sqlite3

        from rail.store.schema import SCHEMA_VERSION, database_path
        from tests.store.oldschemas import schema_v9

        directory = Path(self.mktemp())
        directory.mkdir()
        old = sqlite3.connect(database_path(directory))
        old.executescript(schema_v9())
        insert_events(old, [Event("message.delivered", "app", "M")] * 2, 1.0, _EVERYTHING)
        old.commit()
        old.execute("PRAGMA user_version=9")
        old.close()
        connection = open_writable(directory)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)
        self.assertEqual(event_counts(connection)["queued"], 2)
        indexes = {
            r[0] for r in connection.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")
        }
        self.assertIn("events_final", indexes)


class SQLiteEventStoreTests(TestCase):
    def open(self) -> Any:
        from twisted.internet import reactor

        from rail.store.sqlite import SQLiteStore

        store = SQLiteStore.open(
            Path(self.mktemp()).resolve(), reactor, max_queued=10, min_free_bytes=0
        )
        store.start()
        self.addCleanup(store.close)
        return store

    async def test_claim_quarantines_unreadable_rows_and_reports_them(self) -> None:
        """Through the store: a claim hands out the readable events, quarantines the one
        whose stored type is unknown (reported once, queue ``events``), and a record of
        a POST is on disk and counted by status."""
        store = self.open()
        store.subscriptions = _EVERYTHING
        reported: list[Any] = []
        store.observe_quarantined(reported.append)
        woken: list[int] = []
        store.observe_events(lambda: woken.append(1))

        def write(connection: Any) -> tuple[list[str], int]:
            events = [
                Event("message.delivered", "app", "M1"),
                Event("message.expired", "app", "M2"),
            ]
            ids = insert_events(connection, events, 1000.0, store.subscriptions)
            connection.execute("UPDATE events SET type = 'message.opened' WHERE id = ?", (ids[1],))
            return ids, 0

        good, bad = await store._run(write, True)
        self.assertEqual(woken, [1])
        jobs = await store.claim_events(1000.0, 10, frozenset())
        self.assertEqual([job.id for job in jobs], [good])
        self.assertEqual(
            [(r.queue, r.message_id, r.kind, r.reason) for r in reported],
            [("events", bad, "corrupt", "unknown event type 'message.opened'")],
        )
        self.assertTrue(
            await store.record_event(EventResult(good, 1001.0, "delivered", "HTTP 200"))
        )
        self.assertEqual(
            await store.event_counts(),
            {"queued": 0, "deferred": 0, "delivered": 1, "failed": 1},
        )


class PostgresEventStoreTests(SQLiteEventStoreTests):
    def open(self) -> Any:
        return open_postgres(self)
