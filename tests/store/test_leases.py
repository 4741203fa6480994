"""Leases on the job tables (:mod:`rail.store.lease`): what a claim takes, what a lost
lease refuses, renewal and release, for deliveries, webhooks and events.

The functions run here on SQLite, whose own store takes no leases (one process) but has
the columns, so the same SQL is checked without a PostgreSQL server; the tests of a
shared database are in ``tests/store/test_leases_pg.py``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from twisted.trial.unittest import TestCase

from rail.events.jobs import EventResult
from rail.events.model import EVENT_TYPES, Event
from rail.events.subscriptions import Subscription, Subscriptions
from rail.inbound.model import WebhookResult
from rail.store.db import Connection
from rail.store.deliveries import claim_due, insert_message, quarantine_message, record_result
from rail.store.events import claim_events, insert_events, quarantine_event, record_event
from rail.store.inbound import claim_webhooks, insert_inbound, quarantine_inbound, record_webhook
from rail.store.lease import RENEW_CHUNK, Lease, LeaseLostError, release, renew
from rail.store.model import DeliveryJob, JobResult, RecipientUpdate
from rail.store.schema import SCHEMA_VERSION, database_path, open_writable
from tests.store.oldschemas import schema_v13
from tests.store.test_contract import make_message
from tests.store.test_inbound import make_inbound

T = TypeVar("T")
_T0 = 1_800_000_000.0
_LEASE = 60.0
_EVERYTHING = Subscriptions({"alice": Subscription(frozenset(EVENT_TYPES))})


def _lease(node: str, now: float) -> Lease:
    return Lease(node, now, now + _LEASE)


class _LeaseContract:
    """The lease rules on one database; mixed into a TestCase providing ``connect``."""

    def connect(self) -> Connection:
        raise NotImplementedError

    def setUp(self) -> None:
        self.db = self.connect()

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(connection)`` in a transaction, as the writer does."""
        self.db.execute("BEGIN")
        try:
            result = work(self.db)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return result

    def claim(
        self, node: str, now: float, limit: int = 10, exclude: frozenset[Any] = frozenset()
    ) -> tuple[list[DeliveryJob], dict[str, str]]:
        return self.write(lambda c: claim_due(c, now, limit, exclude, _lease(node, now)))

    def leases(self) -> list[tuple[str, int, str | None, float | None]]:
        return [
            tuple(row)
            for row in self.db.execute(
                "SELECT message_id, idx, claimed_by, lease_until FROM recipients"
                " ORDER BY message_id, idx"
            ).fetchall()
        ]

    def queued(self, recipients: tuple[str, ...] = ("a@example.net",), at: float = _T0) -> str:
        message = make_message(recipients=recipients, received_at=at)
        self.write(lambda c: insert_message(c, message))
        return message.id

    def attempts(self, message_id: str) -> int:
        row = self.db.execute(
            "SELECT count(*) FROM attempts WHERE message_id = ?", (message_id,)
        ).fetchone()
        return int(row[0])

    # -- deliveries -------------------------------------------------------------------------

    def test_claim_takes_the_jobs_rows(self) -> None:
        """A claim writes its node and the lease end into the rows of the jobs it hands
        out, and only those."""
        first = self.queued(("a@example.net", "b@other.org"))
        second = self.queued(at=_T0 + 100)  # not due yet
        (jobs, bad) = self.claim("A", _T0 + 1)
        self.assertEqual(bad, {})
        self.assertEqual(len(jobs), 2)
        self.assertEqual(
            self.leases(),
            [
                (first, 0, "A", _T0 + 1 + _LEASE),
                (first, 1, "A", _T0 + 1 + _LEASE),
                (second, 0, None, None),
            ],
        )

    def test_other_node_waits_for_the_lease(self) -> None:
        """Another node's claim gets nothing while the lease lasts (even excluding
        nothing), and the job once it has ended; that node then holds it."""
        message_id = self.queued()
        (jobs, _) = self.claim("A", _T0)
        self.assertEqual([job.message_id for job in jobs], [message_id])
        (jobs, _) = self.claim("B", _T0 + _LEASE - 1)
        self.assertEqual(jobs, [])
        (jobs, _) = self.claim("B", _T0 + _LEASE + 1)
        self.assertEqual([job.message_id for job in jobs], [message_id])
        self.assertEqual(self.leases(), [(message_id, 0, "B", _T0 + 2 * _LEASE + 1)])

    def test_holder_does_not_claim_its_own_live_rows(self) -> None:
        """A node's claim does not read the rows it holds under a live lease (its jobs in
        flight, kept so by renewals), even without ``exclude``; once released, they are
        claimable again at once."""
        message_id = self.queued()
        self.claim("A", _T0)
        self.assertEqual(self.claim("A", _T0 + 1), ([], {}))
        self.write(
            lambda c: release(c, "recipients", ("message_id", "idx"), [(message_id, 0)], "A")
        )
        (again, _) = self.claim("A", _T0 + 2)
        self.assertEqual([job.message_id for job in again], [message_id])

    def test_result_of_the_holder_applies_and_ends_the_lease(self) -> None:
        """The holder's result is recorded (attempt row, status) and ends the lease: the
        rows are free, and say when the lease ended."""
        message_id = self.queued()
        self.claim("A", _T0)
        result = JobResult(message_id, _T0 + 5, (RecipientUpdate(0, "sent", "250 ok"),))
        self.write(lambda c: record_result(c, result, None, node="A"))
        self.assertEqual(self.leases(), [(message_id, 0, None, _T0 + 5)])
        self.assertEqual(self.attempts(message_id), 1)

    def test_result_under_a_lost_lease_changes_nothing(self) -> None:
        """A's late result, once B took the job, is refused before anything is written:
        no attempt, no status change, no event, no DSN; B's own result then applies once."""
        message_id = self.queued(("a@example.net",))
        self.claim("A", _T0)
        self.claim("B", _T0 + _LEASE + 1)
        bounced = JobResult(message_id, _T0 + 70, (RecipientUpdate(0, "bounced", "550 no"),))
        made: list[object] = []

        def dsn(report: object) -> None:
            made.append(report)

        with self.assertRaises(LeaseLostError):
            self.write(lambda c: record_result(c, bounced, dsn, _EVERYTHING, node="A"))
        self.assertEqual(self.attempts(message_id), 0)
        self.assertEqual(made, [])
        self.assertEqual(self.db.execute("SELECT count(*) FROM events").fetchone()[0], 0)
        self.assertEqual(self.db.execute("SELECT status FROM recipients").fetchall(), [("queued",)])
        sent = JobResult(message_id, _T0 + 71, (RecipientUpdate(0, "sent", "250 ok"),))
        self.write(lambda c: record_result(c, sent, dsn, _EVERYTHING, node="B"))
        self.assertEqual(self.attempts(message_id), 1)
        self.assertEqual(self.db.execute("SELECT status FROM recipients").fetchall(), [("sent",)])
        # A's result once more, now that the row is free: still not A's.
        with self.assertRaises(LeaseLostError):
            self.write(lambda c: record_result(c, bounced, dsn, _EVERYTHING, node="A"))
        self.assertEqual(self.attempts(message_id), 1)

    def test_result_for_rows_nobody_claimed_applies(self) -> None:
        """A result for rows no node has claimed since they were stored, or since they
        were released, is written: no other node ran the job."""
        stored = self.queued(at=_T0 + 100)  # not due at the claim below
        released = self.queued(at=_T0 + 1)
        self.claim("B", _T0 + 1)
        self.write(lambda c: release(c, "recipients", ("message_id", "idx"), [(released, 0)], "B"))
        for message_id in (stored, released):
            result = JobResult(message_id, _T0 + 5, (RecipientUpdate(0, "sent", "250 ok"),))
            self.write(lambda c, result=result: record_result(c, result, None, node="A"))
            self.assertEqual(self.attempts(message_id), 1)

    def test_expired_but_untaken_lease_still_applies(self) -> None:
        """A result after the lease ended but before anyone took the job is the only one:
        it is recorded."""
        message_id = self.queued()
        self.claim("A", _T0)
        result = JobResult(message_id, _T0 + 500, (RecipientUpdate(0, "sent", "250 ok"),))
        self.write(lambda c: record_result(c, result, None, node="A"))
        self.assertEqual(self.attempts(message_id), 1)

    def test_renew_moves_only_own_pending_leases(self) -> None:
        """Renewal moves the lease end of the rows this node holds, not of rows another
        node took meanwhile, nor of final rows."""
        mine = self.queued()
        theirs = self.queued(at=_T0 + 1)
        self.claim("A", _T0 + 1)
        self.write(
            lambda c: c.execute(
                "UPDATE recipients SET claimed_by = 'B' WHERE message_id = ?", (theirs,)
            )
        )
        renewed = self.write(
            lambda c: renew(c, "recipients", "message_id", [mine, theirs], "A", 999.0)
        )
        self.assertEqual(renewed, 1)
        self.assertEqual(self.leases(), [(mine, 0, "A", 999.0), (theirs, 0, "B", _T0 + 1 + _LEASE)])

    def test_renew_in_fixed_size_statements(self) -> None:
        """More ids than one statement takes are renewed in several, all found."""
        ids = [self.queued(at=_T0 + n) for n in range(RENEW_CHUNK + 3)]
        self.claim("A", _T0 + 500, limit=len(ids))
        renewed = self.write(lambda c: renew(c, "recipients", "message_id", ids, "A", 999.0))
        self.assertEqual(renewed, len(ids))

    def test_release_frees_rows_for_anyone(self) -> None:
        """Released rows are claimable by another node at once; release touches only rows
        the releasing node holds."""
        message_id = self.queued()
        self.claim("A", _T0)
        self.write(
            lambda c: release(c, "recipients", ("message_id", "idx"), [(message_id, 0)], "B")
        )
        self.assertEqual(self.leases()[0][2], "A")
        self.write(
            lambda c: release(c, "recipients", ("message_id", "idx"), [(message_id, 0)], "A")
        )
        (jobs, _) = self.claim("B", _T0 + 1)
        self.assertEqual(len(jobs), 1)

    def test_quarantine_leaves_other_nodes_rows(self) -> None:
        """A quarantine fails the rows that are free or held by this node, not those
        another node holds; with only those pending it is refused (LeaseLostError)."""
        message_id = self.queued(("a@example.net", "b@other.org"))
        (jobs, _) = self.claim("A", _T0, limit=1)
        self.assertEqual(len(jobs), 1)
        self.assertTrue(
            self.write(lambda c: quarantine_message(c, message_id, "bad", _T0 + 1, "B"))
        )
        rows = self.db.execute("SELECT status, claimed_by FROM recipients ORDER BY idx").fetchall()
        held = jobs[0].recipients[0].idx
        self.assertEqual(rows[held], ("queued", "A"))
        self.assertEqual(rows[1 - held], ("failed", None))
        with self.assertRaises(LeaseLostError):
            self.write(lambda c: quarantine_message(c, message_id, "bad", _T0 + 2, "B"))
        self.assertEqual(self.db.execute("SELECT count(*) FROM finished").fetchone()[0], 0)
        self.assertTrue(
            self.write(lambda c: quarantine_message(c, message_id, "bad", _T0 + 3, "A"))
        )
        self.assertEqual(self.db.execute("SELECT count(*) FROM finished").fetchone()[0], 1)

    # -- webhooks ---------------------------------------------------------------------------

    def test_webhooks(self) -> None:
        """Webhook jobs spooled under a lease are the spooling node's (offered without a
        claim); another node takes them only after it ends; the first node's late result
        is refused, the second's applies and clears the lease."""
        message = make_inbound(received_at=_T0)
        self.write(lambda c: insert_inbound(c, message, _lease("A", _T0)))
        claim = lambda node, now: self.write(  # noqa: E731
            lambda c: claim_webhooks(c, now, 10, frozenset(), _lease(node, now))
        )
        self.assertEqual(claim("B", _T0 + 1), ([], {}))
        (jobs, _) = claim("B", _T0 + _LEASE + 1)
        self.assertEqual(sorted(job.client for job in jobs), ["app1", "app2"])
        late = WebhookResult(message.id, "app1", _T0 + 70, "delivered", "HTTP 200")
        with self.assertRaises(LeaseLostError):
            self.write(lambda c: record_webhook(c, late, None, node="A"))
        self.write(lambda c: record_webhook(c, late, None, node="B"))
        rows = self.db.execute(
            "SELECT client, status, attempts, claimed_by FROM webhooks ORDER BY client"
        ).fetchall()
        self.assertEqual(
            [tuple(r) for r in rows],
            [("app1", "delivered", 1, None), ("app2", "queued", 0, "B")],
        )
        with self.assertRaises(LeaseLostError):
            self.write(lambda c: quarantine_inbound(c, message.id, "bad", _T0 + 71, "A"))

    # -- events -----------------------------------------------------------------------------

    def test_events(self) -> None:
        """Event jobs: a claim takes them, another node waits for the lease, a late result
        under a lost lease is refused, the holder's applies once."""
        (event_id,) = self.write(
            lambda c: insert_events(
                c, [Event("message.delivered", "alice", "M", "a@x")], _T0, _EVERYTHING
            )
        )
        claim = lambda node, now: self.write(  # noqa: E731
            lambda c: claim_events(c, now, 10, frozenset(), _lease(node, now))
        )
        (jobs, _) = claim("A", _T0)
        self.assertEqual([job.id for job in jobs], [event_id])
        self.assertEqual(claim("B", _T0 + 1), ([], {}))
        (jobs, _) = claim("B", _T0 + _LEASE + 1)
        self.assertEqual([job.id for job in jobs], [event_id])
        result = EventResult(event_id, _T0 + 70, "delivered", "HTTP 200")
        with self.assertRaises(LeaseLostError):
            self.write(lambda c: record_event(c, result, "A"))
        with self.assertRaises(LeaseLostError):
            self.write(lambda c: quarantine_event(c, event_id, "bad", _T0 + 70, "A"))
        self.assertTrue(self.write(lambda c: record_event(c, result, "B")))
        row = self.db.execute("SELECT status, attempts, claimed_by FROM events").fetchone()
        self.assertEqual(tuple(row), ("delivered", 1, None))


class SQLiteLeaseTests(_LeaseContract, TestCase):
    def connect(self) -> Connection:
        directory = Path(self.mktemp())
        directory.mkdir()
        connection = open_writable(directory)
        self.addCleanup(connection.close)
        return connection


class MigrationTests(TestCase):
    def test_from_version_13(self) -> None:
        """A version 13 queue gains the lease columns, empty, and keeps its jobs."""
        directory = Path(self.mktemp())
        directory.mkdir()
        old = sqlite3.connect(database_path(directory))
        old.executescript(schema_v13())
        old.execute(
            "INSERT INTO events VALUES ('E', 'app', 'message.delivered', 'M', 'a@x', 0, 1.0,"
            " ?, 'queued', 0, 1.0, NULL, 1.0)",
            (json.dumps({}),),
        )
        old.commit()
        old.execute("PRAGMA user_version=13")
        old.close()
        connection = open_writable(directory)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)
        self.assertEqual(
            connection.execute("SELECT id, claimed_by, lease_until FROM events").fetchall(),
            [("E", None, None)],
        )
        for table in ("recipients", "webhooks", "events"):
            columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
            self.assertEqual(columns[-2:], ["claimed_by", "lease_until"], table)
