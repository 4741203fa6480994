"""Retention (IRetention) and the figures kept beside it, run against the SQLite store and
MemoryStore alike: what a store keeps of finished messages past each horizon, in small
steps, and counts that stay right across accept, record and purge."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from rail.inbound.model import WebhookResult
from rail.store import queuestore as sqlite_module
from rail.store import schema
from rail.store.deliveries import oldest_pending_received_at, recipient_counts
from rail.store.ids import new_message_id
from rail.store.model import IRetention, JobResult, NewMessage, Purged, RecipientUpdate
from rail.store.ops import ReadOp
from rail.store.retention import RetentionService
from rail.store.schema import database_path
from rail.store.sqlite import SQLiteStore
from rail.testing import MemoryStore
from tests.store.oldschemas import schema_v4
from tests.store.test_contract import make_message, open_postgres, open_sqlite, pg_sql
from tests.support.postgres import postgres_dsn
from tests.webhooks.helpers import inbound

_T0 = 1_800_000_000.0
_DAY = 86400.0
_BODY = 7 * _DAY
_RECORD = 30 * _DAY


def _sent(message: NewMessage, at: float, *statuses: str) -> JobResult:
    """Every recipient of ``message`` final at ``at``, with ``statuses`` in order."""
    return JobResult(
        message.id,
        at,
        tuple(
            RecipientUpdate(index, status, f"{status} reply")  # type: ignore[arg-type]
            for index, status in enumerate(statuses)
        ),
    )


class _RetentionContract:
    """Behaviour every IRetention store shows; mixed into a TestCase providing
    ``make_store`` and ``body_of`` (the stored bytes of an outbound message)."""

    store: Any

    def make_store(self) -> Any:
        raise NotImplementedError

    def body_of(self, message_id: str) -> bytes:
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = self.make_store()

    def test_provides_interface(self) -> None:
        """The store fully provides IRetention."""
        self.assertTrue(verifyObject(IRetention, self.store))

    async def _purge_at(self, now: float, limit: int = 100) -> Purged:
        """Purge steps at ``now`` with the default horizons until no more work remains;
        the totals."""
        totals = Purged()
        while True:
            step = await self.store.purge(now, now - _BODY, now - _RECORD, limit)
            totals = Purged(
                totals.bodies + step.bodies,
                totals.records + step.records,
                totals.keys + step.keys,
                totals.pages + step.pages,
            )
            if not step.more:
                return totals

    async def test_past_both_horizons(self) -> None:
        """Finished messages (sent, bounced, quarantined; inbound delivered) lose their
        bytes after the body horizon, keeping a status that says so, and everything after
        the record horizon; pending mail is never touched, and a DSN made for a bounce is
        a message of its own."""
        sent = make_message(received_at=_T0)
        bounced = make_message(received_at=_T0 + 1, recipients=("a@x.example", "b@y.example"))
        broken = make_message(received_at=_T0 + 2)
        pending = make_message(received_at=_T0 + 3)
        for message in (sent, bounced, broken, pending):
            await self.store.accept(message)
        await self.store.record(_sent(sent, _T0 + 10, "sent"))
        await self.store.record(_sent(bounced, _T0 + 20, "sent", "bounced"))
        await self.store.quarantine(broken.id, "corrupt", "stored data is truncated", _T0 + 30)
        await self.store.record(
            JobResult(
                pending.id,
                _T0 + 40,
                (RecipientUpdate(0, "deferred", "451 later", None, _T0 + 9e9),),
            )
        )
        hook = inbound(new_message_id(_T0 + 4), "https://h.example/", received_at=_T0 + 4)
        waiting = inbound(new_message_id(_T0 + 5), "https://h.example/", received_at=_T0 + 5)
        await self.store.accept_inbound(hook)
        await self.store.accept_inbound(waiting)
        await self.store.record_webhook(
            WebhookResult(hook.id, "myapp", _T0 + 50, "delivered", "200")
        )

        self.assertEqual(await self._purge_at(_T0 + _BODY), Purged())

        purged = await self._purge_at(_T0 + _BODY + 60)
        self.assertEqual((purged.bodies, purged.records), (4, 0))
        for message in (sent, bounced, broken):
            status = await self.store.status("alice", message.id)
            self.assertEqual(status.body_purged_at, _T0 + _BODY + 60)
            self.assertEqual(status.size, len(message.data))
            self.assertEqual(self.body_of(message.id), b"")
        self.assertEqual([s.status for s in (await self.store.status("alice", sent.id),)], ["sent"])
        self.assertEqual(
            (await self.store.inbound_status("myapp", hook.id)).body_purged_at, _T0 + _BODY + 60
        )
        self.assertEqual(self.body_of(pending.id), pending.data)
        self.assertIsNone((await self.store.status("alice", pending.id)).body_purged_at)
        self.assertFalse(self.store.expired(sent.id))

        purged = await self._purge_at(_T0 + _RECORD + 60)
        self.assertEqual((purged.bodies, purged.records), (0, 4))
        for message in (sent, bounced, broken):
            self.assertIsNone(await self.store.status("alice", message.id))
            self.assertTrue(self.store.expired(message.id))
        self.assertIsNone(await self.store.inbound_status("myapp", hook.id))
        self.assertTrue(self.store.expired(hook.id))
        self.assertEqual((await self.store.status("alice", pending.id)).status, "deferred")
        self.assertEqual(self.body_of(pending.id), pending.data)
        self.assertEqual((await self.store.inbound_status("myapp", waiting.id)).status, "queued")
        self.assertFalse(self.store.expired(new_message_id(_T0 + 60)))
        self.assertEqual(
            await self.store.recipient_counts(),
            {"queued": 0, "deferred": 1, "sent": 0, "bounced": 0, "failed": 0, "deleted": 0},
        )
        self.assertEqual(
            await self.store.webhook_counts(),
            {"queued": 1, "deferred": 0, "delivered": 0, "failed": 0},
        )

    async def test_small_steps(self) -> None:
        """A step does at most ``limit`` messages and says when more is left; repeated
        steps finish the work."""
        messages = [make_message(received_at=_T0 + n) for n in range(5)]
        for message in messages:
            await self.store.accept(message)
            await self.store.record(_sent(message, _T0 + 10, "sent"))
        now = _T0 + _RECORD + 60
        first = await self.store.purge(now, now - _BODY, now - _RECORD, 2)
        self.assertEqual((first.records, first.more), (2, True))
        rest = await self._purge_at(now, limit=2)
        self.assertEqual(rest.records, 3)
        for message in messages:
            self.assertIsNone(await self.store.status("alice", message.id))

    async def test_counts_across_accept_record_purge(self) -> None:
        """Recipient counts follow every accept, recorded attempt and purge."""
        zero = {"queued": 0, "deferred": 0, "sent": 0, "bounced": 0, "failed": 0, "deleted": 0}
        self.assertEqual(await self.store.recipient_counts(), zero)
        one = make_message(received_at=_T0, recipients=("a@x.example", "b@x.example"))
        two = make_message(received_at=_T0 + 1)
        await self.store.accept(one)
        await self.store.accept(two)
        self.assertEqual(await self.store.recipient_counts(), {**zero, "queued": 3})
        await self.store.record(
            JobResult(one.id, _T0 + 5, (RecipientUpdate(0, "deferred", "451", None, _T0 + 60),))
        )
        self.assertEqual(await self.store.recipient_counts(), {**zero, "queued": 2, "deferred": 1})
        await self.store.record(_sent(one, _T0 + 70, "sent", "bounced"))
        await self.store.record(_sent(two, _T0 + 70, "sent"))
        self.assertEqual(await self.store.recipient_counts(), {**zero, "sent": 2, "bounced": 1})
        await self._purge_at(_T0 + _BODY + 100)
        self.assertEqual(await self.store.recipient_counts(), {**zero, "sent": 2, "bounced": 1})
        await self._purge_at(_T0 + _RECORD + 100)
        self.assertEqual(await self.store.recipient_counts(), zero)

    async def test_oldest_pending(self) -> None:
        """The oldest message with a pending recipient gives the time; finished ones and
        none at all do not."""
        self.assertIsNone(await self.store.oldest_pending_received_at())
        done = make_message(received_at=_T0)
        later = make_message(received_at=_T0 + 50)
        latest = make_message(received_at=_T0 + 90)
        for message in (done, later, latest):
            await self.store.accept(message)
        await self.store.record(_sent(done, _T0 + 5, "sent"))
        self.assertEqual(await self.store.oldest_pending_received_at(), _T0 + 50)


@implementer(IReactorFromThreads, IReactorTime)
class _ClockedReactor:
    """The real reactor's callFromThread, a Clock's time: reuse of counts on a clock the
    test moves."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        reactor.callFromThread(f, *args, **kwargs)

    def seconds(self) -> float:
        return self._clock.seconds()

    def callLater(self, delay: float, f: Any, *args: Any, **kwargs: Any) -> Any:
        return self._clock.callLater(delay, f, *args, **kwargs)

    def getDelayedCalls(self) -> Any:
        return self._clock.getDelayedCalls()


class SQLiteRetentionTests(_RetentionContract, TestCase):
    def make_store(self) -> Any:
        self.directory = Path(self.mktemp()) / "queue"
        return open_sqlite(self, self.directory)

    def body_of(self, message_id: str) -> bytes:
        return bytes(self._sql("SELECT data FROM messages WHERE id = ?", message_id)[0][0])

    def _sql(self, statement: str, *args: object) -> list[tuple[Any, ...]]:
        connection = sqlite3.connect(database_path(self.directory), timeout=5)
        try:
            with connection:
                return connection.execute(statement, args).fetchall()
        finally:
            connection.close()

    async def test_space_given_back(self) -> None:
        """Dropping bodies frees pages, and the steps give them back to the file system
        (incremental vacuum) until none is left free."""
        big = b"Subject: big\r\n\r\n" + b"x" * 200_000 + b"\r\n"
        for n in range(10):
            message = make_message(received_at=_T0 + n, data=big)
            await self.store.accept(message)
            await self.store.record(_sent(message, _T0 + 10, "sent"))
        pages_before = self._sql("PRAGMA page_count")[0][0]
        purged = await self._purge_at(_T0 + _BODY + 60)
        self.assertEqual(purged.bodies, 10)
        self.assertGreater(purged.pages, 400)
        self.assertEqual(self._sql("PRAGMA freelist_count"), [(0,)])
        self.assertLess(self._sql("PRAGMA page_count")[0][0], pages_before - 400)

    async def test_tally_matches_tables(self) -> None:
        """The counts kept by triggers equal a count of the tables after quarantine,
        webhook results and purges."""
        messages = [make_message(received_at=_T0 + n) for n in range(4)]
        for message in messages:
            await self.store.accept(message)
        await self.store.record(_sent(messages[0], _T0 + 5, "sent"))
        await self.store.quarantine(messages[1].id, "error", "boom", _T0 + 6)
        spooled = inbound(new_message_id(_T0), "https://h.example/", clients=("a", "b"))
        await self.store.accept_inbound(spooled)
        await self.store.record_webhook(
            WebhookResult(spooled.id, "a", _T0 + 7, "failed", "HTTP 410")
        )
        await self._purge_at(_T0 + _RECORD)
        tally = dict(self._sql("SELECT status, n FROM tally WHERE queue = 'outbound'"))
        counted = dict(self._sql("SELECT status, count(*) FROM recipients GROUP BY status"))
        self.assertEqual({k: v for k, v in tally.items() if v}, counted)
        webhooks = dict(self._sql("SELECT status, n FROM tally WHERE queue = 'inbound'"))
        counted = dict(self._sql("SELECT status, count(*) FROM webhooks GROUP BY status"))
        self.assertEqual({k: v for k, v in webhooks.items() if v}, counted)

    async def test_damaged_row_does_not_stop_retention(self) -> None:
        """A finished message whose row SQLite reports damaged (a broken overflow chain)
        is left in place with a log line; the messages around it are purged, and later
        steps do not trip over it again. (A file without auto-vacuum, as upgraded from
        version 4: with it, SQLite follows overflow chains through its pointer map.)"""
        self.patch(schema, "COMPACT_AT_START", 0)
        self.directory = _version_4(self, rows="")
        self.store = open_sqlite(self, self.directory)
        before = make_message(received_at=_T0)
        bad = make_message(
            received_at=_T0 + 1, data=b"".join(b"MARK%06d" % i for i in range(12_500))
        )
        after = make_message(received_at=_T0 + 2)
        for message in (before, bad, after):
            await self.store.accept(message)
            await self.store.record(_sent(message, _T0 + 10, "sent"))
        await self.store.close()
        path = database_path(self.directory)
        # Whichever of the store's connections closed last may not have checkpointed (a
        # read-only one cannot): move everything into the main file before editing it.
        checkpoint = sqlite3.connect(path)
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpoint.close()
        raw = bytearray(path.read_bytes())
        # An overflow page of ``bad`` (the first whole mark from 6000: one may straddle pages).
        found = (raw.find(b"MARK%06d" % i) for i in range(6000, 6010))
        page = next(at for at in found if at >= 0) // 4096 * 4096
        raw[page : page + 4] = b"\xff\xff\xff\xff"  # its next-page pointer
        path.write_bytes(bytes(raw))
        self.store = open_sqlite(self, self.directory)
        purged = await self._purge_at(_T0 + _BODY + 60)
        self.assertEqual(purged.bodies, 2)
        self.assertEqual((self.body_of(before.id), self.body_of(after.id)), (b"", b""))
        self.assertEqual(
            self._sql("SELECT id FROM finished WHERE body_purged_at IS NOT NULL ORDER BY id"),
            sorted([(before.id,), (bad.id,), (after.id,)]),
        )
        purged = await self._purge_at(_T0 + _RECORD + 60)
        self.assertEqual(purged.records, 2)
        self.assertEqual(self._sql("SELECT id FROM messages"), [(bad.id,)])
        self.assertEqual(self._sql("SELECT count(*) FROM finished"), [(0,)])

    async def test_pending_again_is_not_finished(self) -> None:
        """A final recipient made pending again (an operator's retry) takes its message
        out of retention until it is final again."""
        message = make_message(received_at=_T0)
        await self.store.accept(message)
        await self.store.record(_sent(message, _T0 + 10, "bounced"))
        self._sql(
            "UPDATE recipients SET status = 'queued', next_attempt_at = 0 WHERE message_id = ?",
            message.id,
        )
        purged = await self._purge_at(_T0 + _RECORD + 60)
        self.assertEqual(purged, Purged())
        self.assertEqual(self.body_of(message.id), message.data)

    async def test_reads_do_not_wait_for_the_writer(self) -> None:
        """Counts, status look-ups and the oldest pending time are answered while the
        writer thread is busy: they run on the read thread."""
        message = make_message(received_at=_T0)
        await self.store.accept(message)
        busy = threading.Event()
        release = threading.Event()

        def block(connection: sqlite3.Connection) -> None:
            busy.set()
            release.wait(30)

        writer_done = self.store._submit(lambda token: ReadOp(block, token))
        busy.wait(30)
        try:
            self.assertEqual((await self.store.recipient_counts())["queued"], 1)
            self.assertEqual((await self.store.status("alice", message.id)).status, "queued")
            self.assertEqual(await self.store.oldest_pending_received_at(), _T0)
            self.assertEqual(
                await self.store.webhook_counts(),
                dict.fromkeys(("queued", "deferred", "delivered", "failed"), 0),
            )
        finally:
            release.set()
        await writer_done

    async def test_counts_shared_and_never_older_than_a_write(self) -> None:
        """Counts asked for together are read once and shared, and reused for a second;
        a count asked for after a write was answered includes it, even within that
        second."""
        clock = Clock()
        store = SQLiteStore.open(
            Path(self.mktemp()) / "queue", _ClockedReactor(clock), max_queued=100, min_free_bytes=0
        )
        self.addCleanup(store.close)
        store.start()
        reads: list[str] = []
        self.patch(
            sqlite_module,
            "recipient_counts",
            lambda connection: reads.append("read") or recipient_counts(connection),
        )
        first, second = store.recipient_counts(), store.recipient_counts()
        self.assertEqual(await first, await second)
        self.assertEqual(len(reads), 1)
        clock.advance(0.5)
        await store.recipient_counts()
        self.assertEqual(len(reads), 1)  # reused: nothing was written since
        clock.advance(0.5)
        await store.recipient_counts()
        self.assertEqual(len(reads), 2)  # a second old: read again
        await store.accept(make_message(received_at=_T0))
        self.assertEqual((await store.recipient_counts())["queued"], 1)
        self.assertEqual(len(reads), 3)

    def test_oldest_pending_is_an_index_search(self) -> None:
        """The oldest pending message is found through the partial index of pending
        recipients by message id, never by scanning messages or recipients."""
        plan = " ".join(
            row[3]
            for row in self._sql(
                "EXPLAIN QUERY PLAN SELECT min(message_id) FROM recipients"
                " WHERE status IN ('queued', 'deferred')"
            )
        )
        self.assertIn("recipients_pending_message", plan)
        self.assertNotIn("SCAN recipients", plan.replace("USING COVERING INDEX", ""))
        connection = sqlite3.connect(database_path(self.directory))
        self.addCleanup(connection.close)
        self.assertIsNone(oldest_pending_received_at(connection))


class PostgresRetentionTests(_RetentionContract, TestCase):
    def make_store(self) -> Any:
        self.dsn = postgres_dsn(self)
        return open_postgres(self, self.dsn)

    def body_of(self, message_id: str) -> bytes:
        return bytes(pg_sql(self.dsn, "SELECT data FROM messages WHERE id = ?", message_id)[0][0])


class MemoryRetentionTests(_RetentionContract, TestCase):
    def make_store(self) -> Any:
        return MemoryStore(Clock())

    def body_of(self, message_id: str) -> bytes:
        return self.store.messages[message_id].data


_V4_ROWS = """
INSERT INTO messages (id, client, sender, channel, smtputf8, eight_bit, received_at, size,
    sha256, data) VALUES
    ('01A', 'alice', 'a@example.com', 'api', 0, 0, 100, 5, '', x'6869212121'),
    ('01B', 'alice', 'a@example.com', 'api', 0, 0, 200, 5, '', x'6869212121');
INSERT INTO recipients (message_id, idx, address, status, attempts, updated_at) VALUES
    ('01A', 0, 'x@example.net', 'sent', 1, 150), ('01A', 1, 'y@example.net', 'bounced', 1, 170),
    ('01B', 0, 'x@example.net', 'sent', 1, 250), ('01B', 1, 'y@example.net', 'deferred', 1, 260);
INSERT INTO inbound (id, sender, received_at, subject, authentication, bounce_allowed, peer,
    tls, size, sha256, data)
    VALUES ('01C', 's@example.org', 300, 'hi', '{}', 1, '', 0, 1, '', x'00');
INSERT INTO webhooks (message_id, client, url, recipients, status, attempts, updated_at) VALUES
    ('01C', 'alice', 'https://h.example/', '[]', 'delivered', 1, 310);
"""


def _version_4(test: TestCase, rows: str = _V4_ROWS) -> Path:
    """A queue database as Rail wrote it at schema version 4 (no incremental vacuum),
    holding ``rows``."""
    directory = Path(test.mktemp()) / "queue"
    directory.mkdir(parents=True)
    connection = sqlite3.connect(database_path(directory), isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.executescript(schema_v4() + rows + "PRAGMA user_version=4;")
    connection.close()
    return directory


class MigrationTests(TestCase):
    def _version_4(self) -> Path:
        return _version_4(self)

    def _sql(self, directory: Path, statement: str) -> list[tuple[Any, ...]]:
        connection = sqlite3.connect(database_path(directory))
        try:
            return connection.execute(statement).fetchall()
        finally:
            connection.close()

    def test_from_version_4(self) -> None:
        """Version 4 becomes the current version (through 5): counts and finished messages
        are filled in from what is stored (finished at their last recipient's or job's
        update), and a small file is rebuilt with incremental vacuum; the data is kept."""
        directory = self._version_4()
        open_sqlite(self, directory)
        self.assertEqual(self._sql(directory, "PRAGMA user_version"), [(schema.SCHEMA_VERSION,)])
        self.assertEqual(self._sql(directory, "PRAGMA auto_vacuum"), [(2,)])
        self.assertEqual(
            self._sql(directory, "SELECT queue, id, finished_at, body_purged_at FROM finished"),
            [("inbound", "01C", 310.0, None), ("outbound", "01A", 170.0, None)],
        )
        self.assertEqual(
            dict(self._sql(directory, "SELECT status, n FROM tally WHERE queue = 'outbound'")),
            {"queued": 0, "deferred": 1, "sent": 2, "bounced": 1, "failed": 0, "deleted": 0},
        )
        self.assertEqual(
            self._sql(
                directory, "SELECT n FROM tally WHERE queue = 'inbound' AND status = 'delivered'"
            ),
            [(1,)],
        )
        self.assertEqual(
            self._sql(directory, "SELECT data FROM messages WHERE id = '01A'"), [(b"hi!!!",)]
        )

    async def test_large_file_is_not_rebuilt(self) -> None:
        """A version 4 file over the start-up compaction size keeps its layout (no
        VACUUM at start); retention still works, giving no pages back."""
        self.patch(schema, "COMPACT_AT_START", 0)
        directory = self._version_4()
        store = open_sqlite(self, directory)
        self.assertEqual(self._sql(directory, "PRAGMA auto_vacuum"), [(0,)])
        purged = await store.purge(1000.0, 1000.0, 1000.0, 10)
        self.assertEqual((purged.records, purged.pages), (2, 0))
        self.assertEqual(self._sql(directory, "SELECT id FROM messages"), [("01B",)])


class RetentionServiceTests(TestCase):
    """The service on an injected clock, over MemoryStore."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(_T0)
        self.store = MemoryStore(self.clock)
        self.service = RetentionService(
            self.clock, self.store, body=_BODY, record=_RECORD, interval=3600.0, limit=2
        )

    def _advance(self, seconds: float, step: float = 600.0) -> None:
        """Let ``seconds`` pass on the clock, in ``step``-second ticks."""
        for _ in range(int(seconds / step)):
            self.clock.advance(step)

    def test_runs_past_both_horizons(self) -> None:
        """As the clock passes the body horizon, then the record horizon, of messages
        finished at T0, the service drops their bytes and then their records, in steps
        of ``limit``, while a pending message stays whole."""
        finished = [make_message(received_at=_T0) for _ in range(5)]
        pending = make_message(received_at=_T0)
        for message in [*finished, pending]:
            self.successResultOf(self.store.accept(message))
        for message in finished:
            self.successResultOf(self.store.record(_sent(message, _T0, "sent")))
        self.service.startService()
        self.addCleanup(self.service.stopService)

        self._advance(_BODY - 3600)
        self.assertTrue(all(self.store.messages[m.id].data for m in finished))
        self._advance(2 * 3600)
        self.assertEqual([self.store.messages[m.id].data for m in finished], [b""] * 5)
        self._advance(_RECORD - _BODY)
        self.assertEqual(set(self.store.messages), {pending.id})
        self.assertEqual(self.store.messages[pending.id].data, pending.data)
        self.assertTrue(self.store.expired(finished[0].id))

    def test_stop_cancels(self) -> None:
        """Stopping the service leaves nothing scheduled on the clock."""
        self.service.startService()
        self.clock.advance(0)
        self.service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
