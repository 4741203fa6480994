"""What only the SQLite store promises: durability, group commit, capacity, failure handling."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
import threading
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.trial.unittest import TestCase

from rail.store import inspect
from rail.store.model import (
    Accepted,
    IdempotencyKey,
    QueueFullError,
    Replayed,
    StoreUnavailableError,
)
from rail.store.schema import SCHEMA_VERSION, database_path
from rail.store.sqlite import SQLiteStore
from tests.store.test_contract import make_message, open_sqlite


def _sql(directory: Path, statement: str, *args: object) -> list[tuple[object, ...]]:
    """Run one statement on the queue database from a second connection, as a tool would."""
    connection = sqlite3.connect(database_path(directory), isolation_level=None, timeout=5)
    try:
        return connection.execute(statement, args).fetchall()
    finally:
        connection.close()


async def _outcomes(deferreds: list[Deferred[object]]) -> list[object]:
    """Each Deferred's result, or its exception, in order."""
    results = await DeferredList(deferreds, consumeErrors=True)
    return [value if ok else value.value for ok, value in results]


class DurabilityTests(TestCase):
    async def test_bytes_identical_after_reopen(self) -> None:
        """The stored bytes are exactly the accepted ones, across a close and a reopen, and
        the recorded sha256 matches them."""
        directory = Path(self.mktemp()) / "queue"
        data = b"Subject: x\r\n\r\n" + bytes(range(256)) * 64 + b"\r\n.\r\n\n\r"
        message = make_message(data=data, recipients=("a@example.net", "b@example.net"))
        store = open_sqlite(self, directory)
        await store.accept(message)
        await store.close()

        again = open_sqlite(self, directory)
        status = await again.status("alice", message.id)
        stored = inspect.get_message(directory, message.id)
        self.assertEqual(status.size, len(data))
        self.assertEqual(hashlib.sha256(stored.data).hexdigest(), hashlib.sha256(data).hexdigest())
        self.assertEqual(stored.sha256, hashlib.sha256(data).hexdigest())
        self.assertEqual(stored.recipients, ("a@example.net", "b@example.net"))
        self.assertEqual((stored.sender, stored.channel), (message.sender, "api"))

    async def test_reopen_recounts_queue(self) -> None:
        """A new store on the same directory counts the queued messages against its limit."""
        directory = Path(self.mktemp()) / "queue"
        store = open_sqlite(self, directory)
        for _ in range(3):
            await store.accept(make_message())
        await store.close()

        again = open_sqlite(self, directory, max_queued=3)
        self.assertEqual(again.queued, 3)
        with self.assertRaises(QueueFullError):
            await again.accept(make_message())

    def test_directory_created_private(self) -> None:
        """The queue directory (and missing parents) is created with mode 0700."""
        directory = Path(self.mktemp()) / "data" / "queue"
        open_sqlite(self, directory)
        self.assertEqual(stat.S_IMODE(directory.stat().st_mode), 0o700)
        self.assertTrue(database_path(directory).is_file())

    def test_schema(self) -> None:
        """The database is in WAL mode with incremental vacuum, at schema version 6, and
        pending recipients are indexed on next_attempt_at for the delivery scheduler."""
        directory = Path(self.mktemp()) / "queue"
        open_sqlite(self, directory)
        self.assertEqual(_sql(directory, "PRAGMA journal_mode"), [("wal",)])
        self.assertEqual(_sql(directory, "PRAGMA user_version"), [(SCHEMA_VERSION,)])
        self.assertEqual(_sql(directory, "PRAGMA auto_vacuum"), [(2,)])
        columns = _sql(directory, "PRAGMA index_info(recipients_pending)")
        self.assertEqual([c[2] for c in columns], ["next_attempt_at"])
        plan = _sql(
            directory,
            "EXPLAIN QUERY PLAN SELECT message_id FROM recipients WHERE status IN"
            " ('queued', 'deferred') AND next_attempt_at <= 1 ORDER BY next_attempt_at LIMIT 5",
        )
        self.assertIn("recipients_pending", plan[0][3])
        self.assertNotIn("TEMP B-TREE", " ".join(row[3] for row in plan))

    def test_corrupt_file(self) -> None:
        """A damaged database file fails open with a one-line StoreUnavailableError naming
        the file."""
        directory = Path(self.mktemp()) / "queue"
        directory.mkdir(parents=True)
        database_path(directory).write_bytes(b"this is not a database" * 500)
        with self.assertRaises(StoreUnavailableError) as caught:
            SQLiteStore.open(directory, reactor, max_queued=10, min_free_bytes=0)
        text = str(caught.exception)
        self.assertIn(str(database_path(directory)), text)
        self.assertNotIn("\n", text)

    def test_newer_schema(self) -> None:
        """A database from a newer Rail (higher user_version) is refused, not modified."""
        directory = Path(self.mktemp()) / "queue"
        directory.mkdir(parents=True)
        newer = SCHEMA_VERSION + 1
        _sql(directory, f"PRAGMA user_version={newer}")
        with self.assertRaises(StoreUnavailableError) as caught:
            SQLiteStore.open(directory, reactor, max_queued=10, min_free_bytes=0)
        self.assertIn(f"version {newer}", str(caught.exception))
        self.assertEqual(_sql(directory, "PRAGMA user_version"), [(newer,)])


class LifecycleTests(TestCase):
    def _writers(self) -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "rail-store-writer"]

    async def test_open_keeps_no_thread_until_start(self) -> None:
        """open() leaves no thread behind (twistd may fork after it); accepts submitted
        before start() are answered once it runs."""
        directory = Path(self.mktemp()) / "queue"
        store = SQLiteStore.open(directory, reactor, max_queued=10, min_free_bytes=0)
        self.addCleanup(store.close)
        self.assertEqual(self._writers(), [])
        message = make_message()
        early = store.accept(message)
        store.start()
        self.assertEqual(await early, Accepted(message.id, 1))

    async def test_close_before_start(self) -> None:
        """Closing a store that never started fails what was submitted and fires at once."""
        directory = Path(self.mktemp()) / "queue"
        store = SQLiteStore.open(directory, reactor, max_queued=10, min_free_bytes=0)
        early = store.accept(make_message())
        await store.close()
        with self.assertRaises(StoreUnavailableError):
            await early
        store.start()
        self.assertEqual(self._writers(), [])

    async def test_close_finishes_pending_work_and_stops_thread(self) -> None:
        """close() answers every accept submitted before it, then the writer thread is gone."""
        store = open_sqlite(self)
        pending = [store.accept(make_message()) for _ in range(20)]
        await store.close()
        self.assertTrue(all(isinstance(r, Accepted) for r in await _outcomes(pending)))
        self.assertEqual(self._writers(), [])
        with self.assertRaises(StoreUnavailableError):
            await store.status("alice", "x")


class GroupCommitTests(TestCase):
    async def test_concurrent_accepts_share_commits(self) -> None:
        """200 accepts submitted together are all stored, in fewer than 200 transactions."""
        directory = Path(self.mktemp()) / "queue"
        store = open_sqlite(self, directory)
        messages = [make_message() for _ in range(200)]
        results = await _outcomes([store.accept(m) for m in messages])
        self.assertEqual(results, [Accepted(m.id, 1) for m in messages])
        self.assertLess(store.commits, 200)
        self.assertEqual(store.queued, 200)
        stored = {m.id for m in inspect.list_messages(directory)}
        self.assertEqual(stored, {m.id for m in messages})


class CapacityTests(TestCase):
    async def test_max_queued(self) -> None:
        """Beyond ``max_queued`` pending messages, accept fails with QueueFullError and
        nothing of the refused messages is stored."""
        directory = Path(self.mktemp()) / "queue"
        store = open_sqlite(self, directory, max_queued=2)
        messages = [make_message() for _ in range(3)]
        results = await _outcomes([store.accept(m) for m in messages])
        self.assertEqual(results[:2], [Accepted(messages[0].id, 1), Accepted(messages[1].id, 1)])
        self.assertIsInstance(results[2], QueueFullError)
        self.assertEqual(len(inspect.list_messages(directory)), 2)
        self.assertEqual(_sql(directory, "SELECT count(*) FROM recipients"), [(2,)])

    async def test_replay_answered_when_full(self) -> None:
        """A replayed request needs no room, so it is answered even when the queue is full."""
        store = open_sqlite(self, max_queued=1)
        first = make_message()
        key = IdempotencyKey("req", "fp")
        await store.accept(first, key)
        self.assertEqual(await store.accept(make_message(), key), Replayed(first.id, 1))

    async def test_min_free_bytes(self) -> None:
        """When the file system has less free space than ``min_free_bytes`` accept fails
        with QueueFullError and nothing is stored."""
        directory = Path(self.mktemp()) / "queue"
        store = open_sqlite(self, directory, min_free_bytes=2**62)
        with self.assertRaises(QueueFullError):
            await store.accept(make_message(), IdempotencyKey("req", "fp"))
        self.assertEqual(inspect.list_messages(directory), [])
        self.assertEqual(_sql(directory, "SELECT count(*) FROM idempotency"), [(0,)])


class FailureTests(TestCase):
    async def test_bad_message_does_not_fail_its_batch(self) -> None:
        """A message whose insert fails gets StoreUnavailableError (with the SQLite error as
        its cause), leaves no row behind, and the others of its batch are stored."""
        directory = Path(self.mktemp()) / "queue"
        store = open_sqlite(self, directory)
        _sql(
            directory,
            "CREATE TRIGGER refuse BEFORE INSERT ON recipients"
            " WHEN NEW.address = 'bad@example.net' BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        good = make_message(recipients=("a@example.net",))
        bad = make_message(recipients=("ok@example.net", "bad@example.net"))
        also = make_message()
        results = await _outcomes([store.accept(m) for m in (good, bad, also)])

        self.assertEqual(results[0], Accepted(good.id, 1))
        self.assertIsInstance(results[1], StoreUnavailableError)
        self.assertIsInstance(results[1].__cause__, sqlite3.Error)
        self.assertEqual(results[2], Accepted(also.id, 1))
        self.assertEqual(
            _sql(directory, "SELECT count(*) FROM recipients WHERE message_id = ?", bad.id),
            [(0,)],
        )
        self.assertIsNone(inspect.get_message(directory, bad.id))
        self.assertEqual(store.queued, 2)

    async def test_failed_transaction_leaves_nothing(self) -> None:
        """When the whole transaction is lost, every message of the batch fails and none of
        them is stored; each caller's answer matches the disk, and the store works again
        once the cause is gone."""
        directory = Path(self.mktemp()) / "queue"
        store = open_sqlite(self, directory)
        _sql(
            directory,
            "CREATE TRIGGER lose BEFORE INSERT ON recipients"
            " WHEN NEW.address = 'lose@example.net' BEGIN SELECT RAISE(ROLLBACK, 'lost'); END",
        )
        messages = [make_message() for _ in range(5)]
        messages.insert(2, make_message(recipients=("lose@example.net",)))
        results = await _outcomes([store.accept(m) for m in messages])

        self.assertIsInstance(results[2], StoreUnavailableError)
        stored = {m.id for m in inspect.list_messages(directory)}
        for message, result in zip(messages, results, strict=True):
            self.assertEqual(message.id in stored, isinstance(result, Accepted), result)
        self.assertEqual(store.queued, len(stored))
        self.assertEqual(
            _sql(directory, "SELECT count(DISTINCT message_id) FROM recipients"), [(len(stored),)]
        )

        _sql(directory, "DROP TRIGGER lose")
        later = make_message()
        self.assertEqual(await store.accept(later), Accepted(later.id, 1))


class StatusTests(TestCase):
    async def test_overall_status_from_recipient_rows(self) -> None:
        """status() reports each recipient's row and derives the overall status from them."""
        directory = Path(self.mktemp()) / "queue"
        store = open_sqlite(self, directory)
        message = make_message(recipients=("a@example.net", "b@example.net"))
        await store.accept(message)
        _sql(
            directory,
            "UPDATE recipients SET status = 'sent', attempts = 1, last_reply = '250 ok',"
            " next_attempt_at = NULL, updated_at = 5 WHERE message_id = ? AND idx = 0",
            message.id,
        )
        _sql(
            directory,
            "UPDATE recipients SET status = 'deferred', attempts = 1, last_reply = '451 later',"
            " next_attempt_at = 900, updated_at = 5 WHERE message_id = ? AND idx = 1",
            message.id,
        )
        status = await store.status("alice", message.id)
        self.assertEqual(status.status, "deferred")
        self.assertEqual(
            [(r.status, r.attempts, r.last_reply, r.next_attempt_at) for r in status.recipients],
            [("sent", 1, "250 ok", None), ("deferred", 1, "451 later", 900.0)],
        )

        _sql(directory, "UPDATE recipients SET status = 'bounced' WHERE idx = 1")
        self.assertEqual((await store.status("alice", message.id)).status, "bounced")

    async def test_old_idempotency_rows_are_purged(self) -> None:
        """Idempotency rows older than a day are deleted by a retention step (not by
        acceptances, which never wait for it), so the table does not grow forever."""
        directory = Path(self.mktemp()) / "queue"
        store = open_sqlite(self, directory)
        old = make_message(received_at=1_000_000.0)
        await store.accept(old, IdempotencyKey("old", "fp"))
        young = make_message(received_at=1_000_000.0 + 23 * 3600)
        await store.accept(young, IdempotencyKey("young", "fp"))
        await store.accept(make_message(received_at=1_000_000.0 + 25 * 3600))
        self.assertEqual(len(_sql(directory, "SELECT key FROM idempotency")), 2)
        purged = await store.purge(1_000_000.0 + 25 * 3600, 0.0, 0.0, 100)
        self.assertEqual(purged.keys, 1)
        self.assertEqual(_sql(directory, "SELECT key FROM idempotency"), [("young",)])


class InspectTests(TestCase):
    async def test_reads_while_store_open(self) -> None:
        """list_messages and get_message read committed messages while the store is open."""
        directory = Path(self.mktemp()) / "queue"
        store = open_sqlite(self, directory)
        first, second = make_message(), make_message(client="bob")
        await store.accept(first)
        await store.accept(second)
        listed = inspect.list_messages(directory)
        self.assertEqual([m.id for m in listed], sorted([first.id, second.id]))
        self.assertEqual(inspect.get_message(directory, second.id).client, "bob")
        self.assertIsNone(inspect.get_message(directory, "01ARZ3NDEKTSV4RRFFQ69G5FAV"))
        self.assertEqual(inspect.get_status(directory, second.id).status, "queued")

    def test_missing_queue(self) -> None:
        """Reading a directory without a queue fails with StoreUnavailableError naming it."""
        directory = Path(self.mktemp())
        with self.assertRaises(StoreUnavailableError) as caught:
            inspect.list_messages(directory)
        self.assertIn(str(directory), str(caught.exception))
