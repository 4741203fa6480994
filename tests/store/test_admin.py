"""The IAdminQueue contract (list, show, retry, hold, release, delete, bounce), run
against the SQLite store and MemoryStore alike, with retention of what admin actions
finish, plus the migration from schema 5 (retention) to 6."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from rail.store.adminmodel import SCAN_BUDGET, IAdminQueue, QueueQuery, RetryTarget
from rail.store.model import IdempotencyKey, JobResult, RecipientUpdate
from rail.store.schema import SCHEMA_VERSION, database_path
from rail.testing import MemoryStore
from tests.store.oldschemas import schema_v5
from tests.store.test_contract import make_message, open_postgres, open_sqlite
from tests.store.test_deliveries import _dsn_for

_NOW = 1_800_000_000.0
_LATER = _NOW + 3600


class _AdminContract:
    """Behaviour every IAdminQueue shows; mixed into a TestCase providing ``make_store``."""

    def make_store(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = self.make_store()
        self.woken = 0
        self.store.observe_accepted(self._wake)

    def _wake(self) -> None:
        self.woken += 1

    async def _accept(self, **kwargs: Any) -> str:
        message = make_message(received_at=kwargs.pop("received_at", _NOW), **kwargs)
        await self.store.accept(message)
        return message.id

    async def _defer(self, message_id: str, until: float) -> None:
        """Record a 4xx for recipient 0, next attempt at ``until``."""
        await self.store.record(
            JobResult(
                message_id,
                _NOW,
                (RecipientUpdate(0, "deferred", "451 4.0.0 later", "mx.test", until),),
            )
        )

    async def _claimed(self, now: float = _LATER) -> set[str]:
        jobs = await self.store.claim(now, 100, frozenset())
        return {job.message_id for job in jobs}

    def test_provides_interface(self) -> None:
        """The store fully provides IAdminQueue."""
        self.assertTrue(verifyObject(IAdminQueue, self.store))  # type: ignore[attr-defined]

    async def test_list_filters_and_order(self) -> None:
        """A listing is newest first; client, domain (any case), recipient, status and
        older_than each narrow it."""
        first = await self._accept(client="alice", recipients=("a@One.example",))
        second = await self._accept(client="bob", recipients=("b@two.example",))
        third = await self._accept(
            client="alice", recipients=("c@two.example",), received_at=_NOW + 10
        )
        await self._defer(second, _LATER)

        async def ids(**query: Any) -> list[str]:
            page = await self.store.list_messages(QueueQuery(**query))
            return [m.id for m in page.messages]

        self.assertEqual(await ids(), [third, second, first])
        self.assertEqual(await ids(client="alice"), [third, first])
        self.assertEqual(await ids(domain="TWO.example"), [third, second])
        self.assertEqual(await ids(domain="one.example"), [first])
        self.assertEqual(await ids(recipient="b@two.example"), [second])
        self.assertEqual(await ids(status="deferred"), [second])
        self.assertEqual(await ids(status="queued"), [third, first])
        self.assertEqual(await ids(older_than=_NOW + 5), [second, first])
        page = await self.store.list_messages(QueueQuery(client="bob"))
        [summary] = page.messages
        self.assertEqual(
            (summary.client, summary.status, summary.recipients),
            ("bob", "deferred", ("b@two.example",)),
        )

    async def test_list_by_sender(self) -> None:
        """``sender`` narrows a listing to messages with exactly that envelope sender."""
        first = await self._accept(client="news")  # sender news@example.com
        await self._accept(client="other")
        page = await self.store.list_messages(QueueQuery(sender="news@example.com"))
        self.assertEqual([m.id for m in page.messages], [first])

    async def test_cursor_pages(self) -> None:
        """Following ``next_cursor`` visits every message once, newest first, and the
        last page has no cursor."""
        ids = [await self._accept() for _ in range(7)]
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            page = await self.store.list_messages(QueueQuery(cursor=cursor, limit=3))
            seen.extend(m.id for m in page.messages)
            cursor = page.next_cursor
            if cursor is None:
                break
        self.assertEqual(seen, sorted(ids, reverse=True))

    async def test_request_id(self) -> None:
        """A client finds the message it sent under a request_id; another client does not."""
        message = make_message(client="alice", received_at=_NOW)
        await self.store.accept(message, IdempotencyKey("req-1", "f"))
        await self._accept(client="alice")
        page = await self.store.list_messages(QueueQuery(client="alice", request_id="req-1"))
        self.assertEqual([m.id for m in page.messages], [message.id])
        page = await self.store.list_messages(QueueQuery(client="bob", request_id="req-1"))
        self.assertEqual(page.messages, ())

    async def test_show(self) -> None:
        """show has the envelope, recipients with their last reply and MTA, and the
        header fields; an unknown id is None."""
        message_id = await self._accept(
            recipients=("x@a.example", "y@b.example"),
        )
        await self._defer(message_id, _LATER)
        detail = await self.store.show_message(message_id)
        self.assertEqual(detail.status.id, message_id)
        self.assertEqual(detail.status.sender, "alice@example.com")
        self.assertEqual(
            [(r.address, r.status, r.last_reply) for r in detail.status.recipients],
            [("x@a.example", "deferred", "451 4.0.0 later"), ("y@b.example", "queued", None)],
        )
        self.assertEqual(detail.remote_mta, ("mx.test", None))
        self.assertEqual(
            [(a.idx, a.at, a.status, a.reply, a.remote_mta) for a in detail.history],
            [(0, _NOW, "deferred", "451 4.0.0 later", "mx.test")],
        )
        self.assertTrue(detail.head.startswith(b"Subject: "), detail.head)
        self.assertFalse(detail.held)
        self.assertIsNone(await self.store.show_message("01NOSUCHMESSAGE0000000000"))

    async def test_hold_and_release(self) -> None:
        """A held message is never claimed, lists as held and shows who held it;
        released, it is due at once and the scheduler is woken."""
        message_id = await self._accept()
        self.assertEqual(await self.store.hold(message_id, _NOW, "ops", "check"), "done")
        self.assertEqual(await self.store.hold(message_id, _NOW, "ops", None), "already_held")
        self.assertEqual(await self._claimed(), set())
        page = await self.store.list_messages(QueueQuery(status="held"))
        self.assertEqual([(m.id, m.status) for m in page.messages], [(message_id, "held")])
        detail = await self.store.show_message(message_id)
        self.assertTrue(detail.held)
        self.assertEqual(
            [(a.actor, a.action, a.reason) for a in detail.actions], [("ops", "hold", "check")]
        )
        woken = self.woken
        self.assertEqual(await self.store.release(message_id, _LATER, "ops"), "done")
        self.assertEqual(self.woken, woken + 1)
        self.assertEqual(await self.store.release(message_id, _LATER, "ops"), "not_held")
        self.assertEqual(await self._claimed(), {message_id})

    async def test_history_keeps_every_attempt(self) -> None:
        """Every recorded attempt of a recipient stays in its history, in order; a
        result recorded twice adds nothing."""
        message_id = await self._accept()
        first = JobResult(
            message_id, _NOW, (RecipientUpdate(0, "deferred", "451 first", "mx1", _NOW + 60),)
        )
        await self.store.record(first)
        second = JobResult(message_id, _NOW + 60, (RecipientUpdate(0, "sent", "250 ok", "mx2"),))
        await self.store.record(second)
        await self.store.record(second)
        detail = await self.store.show_message(message_id)
        self.assertEqual(
            [(a.at, a.status, a.reply, a.remote_mta) for a in detail.history],
            [(_NOW, "deferred", "451 first", "mx1"), (_NOW + 60, "sent", "250 ok", "mx2")],
        )

    async def test_deferral_in_flight_keeps_hold(self) -> None:
        """An attempt in flight when the message was held records its deferral but the
        message stays held (no next attempt), so it is not claimed again."""
        message_id = await self._accept()
        await self._claimed()
        await self.store.hold(message_id, _NOW, "ops", None)
        await self._defer(message_id, _NOW + 60)
        self.assertEqual(await self._claimed(), set())
        detail = await self.store.show_message(message_id)
        self.assertEqual(detail.status.recipients[0].attempts, 1)
        self.assertIsNone(detail.status.recipients[0].next_attempt_at)

    async def test_sent_while_held(self) -> None:
        """An attempt in flight when the hold was placed that delivers the message
        leaves it sent, not held: it no longer lists as held and cannot be released."""
        message_id = await self._accept()
        await self._claimed()
        await self.store.hold(message_id, _NOW, "ops", None)
        await self.store.record(
            JobResult(message_id, _NOW, (RecipientUpdate(0, "sent", "250 ok", "mx"),))
        )
        detail = await self.store.show_message(message_id)
        self.assertEqual((detail.status.status, detail.held), ("sent", False))
        page = await self.store.list_messages(QueueQuery(status="held"))
        self.assertEqual(page.messages, ())
        self.assertEqual(await self.store.release(message_id, _NOW, "ops"), "not_held")
        self.assertEqual(await self.store.hold(message_id, _NOW, "ops", None), "not_pending")

    async def test_retry(self) -> None:
        """retry makes deferred recipients due now, by id, by domain or all; held
        messages stay held; an unknown id answers None."""
        one = await self._accept(recipients=("a@one.example",))
        two = await self._accept(recipients=("b@two.example",))
        held = await self._accept(recipients=("c@two.example",))
        for message_id in (one, two, held):
            await self._defer(message_id, _LATER)
        await self.store.hold(held, _NOW, "ops", None)
        self.assertEqual(await self._claimed(_NOW + 1), set())
        self.assertEqual(await self.store.retry(RetryTarget(domain="Two.example"), _NOW, "ops"), 1)
        self.assertEqual(await self._claimed(_NOW + 1), {two})
        self.assertEqual(await self.store.retry(RetryTarget(message_id=one), _NOW, "ops"), 1)
        self.assertEqual(await self.store.retry(RetryTarget(), _NOW, "ops"), 0)
        self.assertEqual(await self._claimed(_NOW + 1), {one, two})
        self.assertIsNone(
            await self.store.retry(RetryTarget(message_id="01NOSUCHMESSAGE0000000000"), _NOW, "o")
        )

    async def test_delete(self) -> None:
        """delete makes pending recipients ``deleted`` with the reason, final: never
        claimed, no DSN; again it is not_pending; unknown is not_found."""
        message_id = await self._accept()
        woken = self.woken
        self.assertEqual(await self.store.delete(message_id, _NOW, "ops", "spam"), "done")
        self.assertEqual(self.woken, woken)
        detail = await self.store.show_message(message_id)
        self.assertEqual(detail.status.status, "deleted")
        self.assertEqual(detail.status.recipients[0].last_reply, "deleted by ops: spam")
        self.assertEqual([a.action for a in detail.actions], ["delete"])
        self.assertEqual(await self._claimed(), set())
        self.assertEqual(await self.store.delete(message_id, _NOW, "ops", "x"), "not_pending")
        self.assertEqual(
            await self.store.delete("01NOSUCHMESSAGE0000000000", _NOW, "ops", "x"), "not_found"
        )
        counts = await self.store.recipient_counts()
        self.assertEqual(counts["deleted"], 1)

    async def test_bounce_sends_dsn(self) -> None:
        """bounce makes pending recipients ``bounced`` and queues the DSN through the
        delivery path, which is then claimed."""
        message_id = await self._accept()
        self.assertEqual(
            await self.store.bounce(message_id, _NOW, "ops", "bad list", _dsn_for), "done"
        )
        detail = await self.store.show_message(message_id)
        self.assertEqual(detail.status.status, "bounced")
        reply = detail.status.recipients[0].last_reply
        self.assertEqual(reply, "550 5.0.0 bounced by the operator (ops): bad list")
        jobs = await self.store.claim(_LATER, 10, frozenset())
        [dsn] = jobs
        self.assertIn(message_id.encode(), dsn.data)
        self.assertEqual(
            await self.store.bounce(message_id, _NOW, "ops", None, _dsn_for), "not_pending"
        )

    async def test_bounce_reports_only_what_it_bounced(self) -> None:
        """A recipient that bounced before had its DSN then: the operator's bounce makes
        one listing just the recipients it bounced."""
        message_id = await self._accept(recipients=("a@x.example", "b@y.example"))
        reported: list[list[str]] = []

        def dsn(report: Any) -> Any:
            reported.append([b.address for b in report.bounced])
            return _dsn_for(report)

        await self.store.record(
            JobResult(message_id, _NOW, (RecipientUpdate(0, "bounced", "550 5.1.1 no", "mx"),)),
            dsn,
        )
        self.assertEqual(await self.store.bounce(message_id, _NOW, "ops", None, dsn), "done")
        self.assertEqual(reported, [["a@x.example"], ["b@y.example"]])

    async def test_deleted_and_bounced_are_finished(self) -> None:
        """Deleted and operator-bounced messages are finished for retention: purged
        past the record horizon, and their recipients leave the counts; a held message
        is pending, so it is kept, counted as queued and keeps its received time as the
        oldest pending."""
        deleted = await self._accept(received_at=_NOW + 1)
        bounced = await self._accept(received_at=_NOW + 2)
        held = await self._accept(received_at=_NOW)
        await self.store.hold(held, _NOW, "ops", None)
        self.assertEqual(await self.store.delete(deleted, _NOW, "ops", "spam"), "done")
        self.assertEqual(await self.store.bounce(bounced, _NOW, "ops", None, None), "done")
        counts = await self.store.recipient_counts()
        self.assertEqual(
            {s: counts[s] for s in ("queued", "bounced", "deleted")},
            {"queued": 1, "bounced": 1, "deleted": 1},
        )
        self.assertEqual(await self.store.oldest_pending_received_at(), _NOW)
        purged = await self.store.purge(_LATER, _LATER, _LATER, 10)
        self.assertEqual(purged.records, 2)
        self.assertIsNone(await self.store.show_message(deleted))
        self.assertIsNone(await self.store.show_message(bounced))
        detail = await self.store.show_message(held)
        self.assertTrue(detail.held)
        self.assertIsNone(detail.status.body_purged_at)
        counts = await self.store.recipient_counts()
        self.assertEqual(
            {s: counts[s] for s in ("queued", "bounced", "deleted")},
            {"queued": 1, "bounced": 0, "deleted": 0},
        )

    async def test_show_after_body_purge(self) -> None:
        """show of a message whose bytes retention dropped says when, keeps the accepted
        size, and has no header section left."""
        message_id = await self._accept()
        await self.store.delete(message_id, _NOW, "ops", "spam")
        accepted = (await self.store.show_message(message_id)).status.size
        purged = await self.store.purge(_LATER, _LATER, _NOW, 10)
        self.assertEqual((purged.bodies, purged.records), (1, 0))
        detail = await self.store.show_message(message_id)
        self.assertEqual(
            (detail.status.body_purged_at, detail.status.size, detail.head),
            (_LATER, accepted, b""),
        )


class SQLiteAdminTests(_AdminContract, TestCase):
    def make_store(self) -> Any:
        self.directory = Path(self.mktemp()) / "queue"
        return open_sqlite(self, self.directory)

    async def test_scan_budget(self) -> None:
        """A rare filter examines at most SCAN_BUDGET messages per page and hands back a
        cursor to go on from, so a page never costs more as the store grows."""
        store = self.store
        match = await self._accept(recipients=("rare@x.example",), received_at=_NOW)
        rows = [make_message(received_at=_NOW + 1) for _ in range(SCAN_BUDGET)]
        for message in rows:
            await store.accept(message)
        page = await store.list_messages(QueueQuery(domain="x.example"))
        self.assertEqual(page.messages, ())
        self.assertEqual(page.next_cursor, min(m.id for m in rows))
        page = await store.list_messages(QueueQuery(domain="x.example", cursor=page.next_cursor))
        self.assertEqual([m.id for m in page.messages], [match])

    async def test_purge_deletes_admin_rows(self) -> None:
        """Retention deleting a message deletes its hold, action and attempt rows too
        (here a hold left by an attempt that delivered the message while it was held)."""
        message_id = await self._accept()
        await self._claimed()
        await self.store.hold(message_id, _NOW, "ops", None)
        await self.store.record(
            JobResult(message_id, _NOW, (RecipientUpdate(0, "sent", "250 ok", "mx"),))
        )
        directory = self.directory
        counts = [
            _count(directory, "SELECT count(*) FROM holds"),
            _count(directory, "SELECT count(*) FROM admin_actions"),
            _count(directory, "SELECT count(*) FROM attempts"),
        ]
        self.assertEqual(counts, [1, 1, 1])
        purged = await self.store.purge(_LATER, _LATER, _LATER, 10)
        self.assertEqual(purged.records, 1)
        counts = [
            _count(directory, "SELECT count(*) FROM holds"),
            _count(directory, "SELECT count(*) FROM admin_actions"),
            _count(directory, "SELECT count(*) FROM attempts"),
        ]
        self.assertEqual(counts, [0, 0, 0])


def _count(directory: Path, statement: str) -> int:
    connection = sqlite3.connect(database_path(directory))
    try:
        return int(connection.execute(statement).fetchone()[0])
    finally:
        connection.close()


_V5_ROWS = """
INSERT INTO messages (id, client, sender, channel, smtputf8, eight_bit, received_at, size,
    sha256, data) VALUES
    ('01A', 'alice', 'a@example.com', 'api', 0, 0, 100, 2, '', x'6869'),
    ('01B', 'alice', 'a@example.com', 'api', 0, 0, 110, 2, '', x'6869'),
    ('01C', 'bob', 'b@example.com', 'smtp', 0, 0, 120, 2, '', x''),
    ('01D', 'bob', 'b@example.com', 'api', 0, 0, 130, 2, '', x'6869'),
    ('01E', 'alice', 'a@example.com', 'api', 0, 0, 140, 2, '', x'6869'),
    ('01F', 'alice', 'a@example.com', 'api', 0, 0, 150, 2, '', x'6869');
INSERT INTO recipients (message_id, idx, address, status, attempts, next_attempt_at,
    last_reply, updated_at, remote_mta) VALUES
    ('01A', 0, 'q@example.net', 'queued', 0, 100, NULL, 100, NULL),
    ('01B', 0, 'd@example.net', 'deferred', 1, 900, '451 later', 115, 'mx'),
    ('01C', 0, 's@example.net', 'sent', 1, NULL, '250 ok', 125, 'mx'),
    ('01D', 0, 'b@example.net', 'bounced', 1, NULL, '550 no', 135, 'mx'),
    ('01E', 0, 'f@example.net', 'failed', 0, NULL, 'quarantined: x', 145, NULL),
    ('01F', 0, 'm@example.net', 'sent', 1, NULL, '250 ok', 155, 'mx'),
    ('01F', 1, 'n@example.net', 'deferred', 1, 950, '451 later', 155, 'mx');
INSERT INTO finished (queue, id, finished_at, body_purged_at) VALUES
    ('outbound', '01C', 125, 500), ('outbound', '01D', 135, NULL),
    ('outbound', '01E', 145, NULL), ('inbound', '01G', 310, NULL);
INSERT INTO inbound (id, sender, received_at, subject, authentication, bounce_allowed, peer,
    tls, size, sha256, data)
    VALUES ('01G', 's@example.org', 300, 'hi', '{}', 1, '', 0, 1, '', x'00');
INSERT INTO webhooks (message_id, client, url, recipients, status, attempts, updated_at) VALUES
    ('01G', 'alice', 'https://h.example/', '[]', 'delivered', 1, 310);
"""


def _version_5(test: TestCase) -> Path:
    """A queue database as Rail wrote it at schema version 5 (retention, before the
    admin tables and the ``deleted`` status), holding messages in every status."""
    directory = Path(test.mktemp()) / "queue"
    directory.mkdir(parents=True)
    connection = sqlite3.connect(database_path(directory), isolation_level=None)
    connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.executescript(schema_v5() + _V5_ROWS + "PRAGMA user_version=5;")
    connection.close()
    return directory


class MigrationTests(TestCase):
    def _sql(self, directory: Path, statement: str) -> list[tuple[Any, ...]]:
        connection = sqlite3.connect(database_path(directory), isolation_level=None)
        connection.execute("PRAGMA busy_timeout=5000")
        try:
            return connection.execute(statement).fetchall()
        finally:
            connection.close()

    async def test_from_version_5(self) -> None:
        """Version 5 becomes 6: every recipient row, ``finished`` row and tally count is
        kept (``deleted`` added at zero); the recipients table has the same indexes and
        triggers as a fresh database, so counts, the oldest pending message, retention
        and admin actions work on the migrated data."""
        directory = _version_5(self)
        recipients = (  # version 5's columns (version 14 adds the lease columns)
            "SELECT message_id, idx, address, status, attempts, next_attempt_at, last_reply,"
            " updated_at, remote_mta FROM recipients ORDER BY message_id, idx"
        )
        tally = "SELECT queue, status, n FROM tally ORDER BY queue, status"
        finished = "SELECT * FROM finished ORDER BY queue, id"
        before = {q: self._sql(directory, q) for q in (recipients, tally, finished)}
        self.assertIn(("outbound", "sent", 2), before[tally])

        store = open_sqlite(self, directory)
        self.assertEqual(self._sql(directory, "PRAGMA user_version"), [(SCHEMA_VERSION,)])
        self.assertEqual(self._sql(directory, recipients), before[recipients])
        self.assertEqual(self._sql(directory, finished), before[finished])
        self.assertEqual(
            self._sql(directory, tally), sorted([*before[tally], ("outbound", "deleted", 0)])
        )
        fresh = Path(self.mktemp()) / "fresh"
        open_sqlite(self, fresh)
        objects = "SELECT type, name, tbl_name FROM sqlite_schema ORDER BY type, name"
        self.assertEqual(self._sql(directory, objects), self._sql(fresh, objects))

        counts = await store.recipient_counts()
        self.assertEqual(
            counts,
            {"queued": 1, "deferred": 2, "sent": 2, "bounced": 1, "failed": 1, "deleted": 0},
        )
        self.assertEqual(await store.oldest_pending_received_at(), 100.0)
        self.assertEqual(await store.delete("01A", 1000.0, "ops", "spam"), "done")
        self.assertEqual(await store.hold("01B", 1000.0, "ops", None), "done")
        counts = await store.recipient_counts()
        self.assertEqual((counts["queued"], counts["deleted"]), (0, 1))
        self.assertEqual(await store.oldest_pending_received_at(), 110.0)
        self.assertEqual(
            self._sql(directory, "SELECT finished_at FROM finished WHERE id = '01A'"),
            [(1000.0,)],
        )
        # A final recipient made pending again takes its message off ``finished``.
        self._sql(directory, "UPDATE recipients SET status = 'queued' WHERE message_id = '01D'")
        self.assertEqual(self._sql(directory, "SELECT 1 FROM finished WHERE id = '01D'"), [])
        purged = await store.purge(2000.0, 2000.0, 2000.0, 10)
        self.assertEqual(purged.records, 4)  # 01A, 01C, 01E, and inbound 01G
        self.assertEqual(
            self._sql(directory, "SELECT id FROM messages ORDER BY id"),
            [("01B",), ("01D",), ("01F",)],
        )
        self.assertEqual(
            dict(self._sql(directory, "SELECT status, n FROM tally WHERE queue = 'outbound'")),
            {"queued": 1, "deferred": 2, "sent": 1, "bounced": 0, "failed": 0, "deleted": 0},
        )


class PostgresAdminTests(_AdminContract, TestCase):
    def make_store(self) -> Any:
        return open_postgres(self)


class MemoryAdminTests(_AdminContract, TestCase):
    def make_store(self) -> Any:
        return MemoryStore(Clock())

    async def test_operator_events(self) -> None:
        """The fake tells of an operator's bounce and delete as the real stores do
        (tests/store/test_emit.py OperatorEventTests): one event per recipient ended."""
        bounced = await self._accept(recipients=("a@example.net", "b@example.net"))
        deleted = await self._accept()
        await self.store.bounce(bounced, _NOW, "ops", "spam trap", None)
        await self.store.delete(deleted, _NOW, "ops", "sent twice")
        self.assertEqual(
            [(e.type, e.message_id, e.recipient) for e in self.store.events],
            [
                ("message.bounced", bounced, "a@example.net"),
                ("message.bounced", bounced, "b@example.net"),
                ("message.deleted", deleted, "bob@example.net"),
            ],
        )
        self.assertEqual(
            self.store.events[0].details["reply"],
            "550 5.0.0 bounced by the operator (ops): spam trap",
        )
        self.assertEqual(self.store.events[2].details, {"reason": "sent twice"})

    async def test_quarantine_events(self) -> None:
        """The fake tells of a quarantine as the real stores do (tests/store/test_emit.py
        FailedTests): ``message.failed`` per recipient ended, none for ``corrupt``."""
        failed = await self._accept(recipients=("a@example.net", "b@example.net"))
        corrupt = await self._accept()
        await self.store.quarantine(failed, "error", "ValueError", _NOW)
        await self.store.quarantine(corrupt, "corrupt", "bad sha", _NOW)
        self.assertEqual(
            [(e.type, e.message_id, e.recipient, e.details) for e in self.store.events],
            [
                ("message.failed", failed, address, {"kind": "error", "reason": "ValueError"})
                for address in ("a@example.net", "b@example.net")
            ],
        )


class ListingPlanTests(TestCase):
    def test_pages_use_indexes(self) -> None:
        """A page's window boundary and its rows are read newest first through an index
        (the primary key, or messages_by_client for one client), never by sorting."""
        directory = Path(self.mktemp()) / "queue"
        open_sqlite(self, directory)
        connection = sqlite3.connect(database_path(directory))
        self.addCleanup(connection.close)
        for where, index in (
            ("WHERE m.id < '9'", "sqlite_autoindex_messages_1"),
            ("WHERE m.client = 'a' AND m.id < '9'", "messages_by_client"),
        ):
            for query in (
                f"SELECT m.id FROM messages AS m {where} ORDER BY m.id DESC LIMIT 1 OFFSET 4999",  # noqa: S608
                f"SELECT m.size FROM messages AS m {where} AND m.id >= '0' ORDER BY m.id DESC",  # noqa: S608
            ):
                plan = " ".join(row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + query))
                self.assertIn(index, plan)
                self.assertNotIn("TEMP B-TREE", plan)
