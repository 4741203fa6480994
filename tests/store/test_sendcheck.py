"""The send-time suppression check on the SQLite store: the ``message.suppressed`` events
written in the acceptance's transaction, retention and the pending count of a message
with nothing to deliver, the admin views that merge suppressed recipients, and the
migration that adds their table. (What both stores answer is in test_contract.)"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from rail.events.subscriptions import Subscription, Subscriptions
from rail.store.adminmodel import QueueQuery
from rail.store.inspect import get_message
from rail.store.model import Accepted, JobResult, QueueFullError, RecipientUpdate
from rail.store.schema import SCHEMA_VERSION, database_path, open_writable
from rail.store.suppressions import Suppression
from rail.testing import MemoryStore
from tests.store.oldschemas import schema_v10
from tests.store.test_contract import make_message, open_postgres, open_sqlite

_T0 = 1_800_000_000.0


class SQLiteSendCheckTests(TestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp()) / "queue"
        self.store = open_sqlite(self, self.directory)

    def _sql(self, statement: str, *args: object) -> list[tuple[Any, ...]]:
        connection = sqlite3.connect(database_path(self.directory))
        try:
            return connection.execute(statement, args).fetchall()
        finally:
            connection.close()

    async def test_event_in_the_same_transaction(self) -> None:
        """Each suppressed recipient of a subscribed client gets one ``message.suppressed``
        event row with the entry's reason, time, source and source message."""
        self.store._writer.subscriptions = Subscriptions(
            {"alice": Subscription(frozenset({"message.suppressed"}))}
        )
        await self.store.add_suppression(
            Suppression("alice", "a@example.net", "hard_bounce", "dsn", _T0 - 60, "01SOURCE")
        )
        message = make_message(recipients=("a@example.net", "b@example.net"), received_at=_T0)
        await self.store.accept(message)
        rows = self._sql("SELECT client, type, message_id, recipient, details FROM events")
        self.assertEqual(len(rows), 1)
        client, kind, message_id, recipient, details = rows[0]
        self.assertEqual(
            (client, kind, message_id, recipient),
            ("alice", "message.suppressed", message.id, "a@example.net"),
        )
        self.assertEqual(
            json.loads(details),
            {
                "reason": "hard_bounce",
                "suppressed_at": "2027-01-15T07:59:00Z",
                "source_message_id": "01SOURCE",
                "source": "dsn",
            },
        )

    async def test_no_event_without_subscription(self) -> None:
        """A client that did not subscribe gets no event row, and the check still applies."""
        await self.store.add_suppression(
            Suppression("alice", "a@example.net", "manual", "api", 1.0)
        )
        result = await self.store.accept(make_message(recipients=("a@example.net",)))
        self.assertEqual(len(result.suppressed), 1)
        self.assertEqual(self._sql("SELECT count(*) FROM events"), [(0,)])

    async def test_all_suppressed_is_not_pending_and_is_purged(self) -> None:
        """A message with every recipient suppressed does not count against max_queued,
        is finished for retention at acceptance, and goes with its suppressed rows."""
        await self.store.add_suppression(
            Suppression("alice", "a@example.net", "manual", "api", 1.0)
        )
        before = self.store.queued
        message = make_message(recipients=("a@example.net",), received_at=_T0)
        await self.store.accept(message)
        self.assertEqual(self.store.queued, before)
        self.assertEqual(
            self._sql("SELECT finished_at FROM finished WHERE id = ?", message.id), [(_T0,)]
        )
        purged = await self.store.purge(_T0 + 10, _T0 + 5, _T0 + 5, 100)
        self.assertEqual(purged.records, 1)
        self.assertIsNone(await self.store.status("alice", message.id))
        self.assertEqual(self._sql("SELECT count(*) FROM suppressed_recipients"), [(0,)])

    async def test_inspect_shows_the_whole_envelope(self) -> None:
        """The queue as ``rail.store.inspect`` reads it has every recipient accepted, the
        suppressed ones included, in order."""
        await self.store.add_suppression(
            Suppression("alice", "a@example.net", "manual", "api", 1.0)
        )
        message = make_message(recipients=("b@example.net", "a@example.net", "c@example.net"))
        await self.store.accept(message)
        stored = get_message(self.directory, message.id)
        assert stored is not None
        self.assertEqual(stored.recipients, message.recipients)

    async def test_mixed_message_finishes_with_its_delivered_recipient(self) -> None:
        """With one recipient suppressed, the message is final (``sent``) once the other
        is sent, and its DSN logic sees only delivered recipients."""
        await self.store.add_suppression(
            Suppression("alice", "a@example.net", "manual", "api", 1.0)
        )
        message = make_message(recipients=("a@example.net", "b@example.net"), received_at=_T0)
        await self.store.accept(message)
        await self.store.record(
            JobResult(message.id, _T0 + 1, (RecipientUpdate(1, "sent", "250 ok", "mx"),))
        )
        status = await self.store.status("alice", message.id)
        self.assertEqual(status.status, "sent")
        self.assertEqual([r.status for r in status.recipients], ["suppressed", "sent"])
        self.assertEqual(self._sql("SELECT count(*) FROM finished"), [(1,)])


class CapacityTests(TestCase):
    def open(self, max_queued: int) -> Any:
        return open_sqlite(self, max_queued=max_queued)

    async def test_all_suppressed_passes_a_full_queue(self) -> None:
        """At max_queued a message with something to deliver is refused, one whose
        recipients are all suppressed is still accepted (it adds nothing to deliver)."""
        store = self.open(max_queued=1)
        await store.add_suppression(Suppression("alice", "a@example.net", "manual", "api", 1.0))
        await store.accept(make_message())
        with self.assertRaises(QueueFullError):
            await store.accept(make_message())
        message = make_message(recipients=("a@example.net",))
        self.assertEqual((await store.accept(message)).id, message.id)


class PostgresCapacityTests(CapacityTests):
    def open(self, max_queued: int) -> Any:
        return open_postgres(self, max_queued=max_queued)


class SQLiteBatchTests(TestCase):
    def open(self, max_queued: int) -> Any:
        return open_sqlite(self, max_queued=max_queued)

    async def test_accept_many_is_one_commit(self) -> None:
        """accept_many stores every message in one transaction (one fsync), and a full
        queue refuses only the items past its capacity."""
        store = self.open(max_queued=3)
        commits = store.commits
        messages = [make_message() for _ in range(5)]
        results = await store.accept_many([(m, None) for m in messages])
        self.assertEqual(store.commits, commits + 1)
        self.assertEqual(results[:3], [Accepted(m.id, 1) for m in messages[:3]])
        self.assertEqual([type(r) for r in results[3:]], [QueueFullError, QueueFullError])
        self.assertIsNone(await store.status("alice", messages[4].id))


class PostgresBatchTests(SQLiteBatchTests):
    def open(self, max_queued: int) -> Any:
        return open_postgres(self, max_queued=max_queued)


class LookAheadTests(TestCase):
    """The writer looks a batch's recipients up in the suppression list ahead of its
    acceptances; what the batch itself changes in the list before an acceptance counts."""

    def open(self) -> Any:
        return open_sqlite(self)

    async def test_change_earlier_in_the_batch_counts(self) -> None:
        """In one batch: two messages to listed addresses (answered from the look-ahead),
        an address taken off, then a third message to it: the first two are suppressed,
        the third is not."""
        store = self.open()
        for address in ("old@example.net", "new@example.net"):
            await store.add_suppression(Suppression("alice", address, "manual", "api", 1.0))
        entered, gate = threading.Event(), threading.Event()
        self.addCleanup(gate.set)

        def hold(connection: Any) -> tuple[object, int]:
            entered.set()
            return gate.wait(30), 0

        held = store._run(hold, True)
        self.assertTrue(entered.wait(30))
        first = make_message(recipients=("new@example.net", "old@example.net", "x@example.net"))
        second = make_message(recipients=("New@Example.NET",))
        accepted = [store.accept(first), store.accept(second)]
        removed = store.remove_suppression("alice", "old@example.net")
        third = make_message(recipients=("old@example.net",))
        last = store.accept(third)
        gate.set()
        await held
        self.assertEqual(
            [[r.address for r in (await d).suppressed] for d in accepted],
            [["new@example.net", "old@example.net"], ["New@Example.NET"]],
        )
        self.assertTrue(await removed)
        self.assertEqual((await last).suppressed, ())


class PostgresLookAheadTests(LookAheadTests):
    def open(self) -> Any:
        return open_postgres(self)


class _AdminViews:
    def make_store(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = self.make_store()

    async def test_listing_and_show_merge_suppressed(self) -> None:
        """The admin listing shows every recipient and filters on ``suppressed``; show
        lines up each recipient with its own attempt history."""
        await self.store.add_suppression(
            Suppression("alice", "a@example.net", "manual", "api", 1.0)
        )
        mixed = make_message(recipients=("a@example.net", "b@example.net"), received_at=_T0)
        plain = make_message(recipients=("b@example.net",), received_at=_T0 + 1)
        await self.store.accept(mixed)
        await self.store.accept(plain)
        await self.store.record(
            JobResult(mixed.id, _T0 + 2, (RecipientUpdate(1, "sent", "250 ok", "mx"),))
        )
        page = await self.store.list_messages(QueueQuery(status="suppressed"))
        self.assertEqual([m.id for m in page.messages], [mixed.id])
        self.assertEqual(page.messages[0].recipients, ("a@example.net", "b@example.net"))
        detail = await self.store.show_message(mixed.id)
        self.assertEqual(
            [(r.address, r.status) for r in detail.status.recipients],
            [("a@example.net", "suppressed"), ("b@example.net", "sent")],
        )
        self.assertEqual(detail.remote_mta, (None, "mx"))
        self.assertEqual([a.idx for a in detail.history], [1])


class SQLiteAdminViewTests(_AdminViews, TestCase):
    def make_store(self) -> Any:
        return open_sqlite(self)


class PostgresAdminViewTests(_AdminViews, TestCase):
    def make_store(self) -> Any:
        return open_postgres(self)


class MemoryAdminViewTests(_AdminViews, TestCase):
    def make_store(self) -> Any:
        return MemoryStore(Clock())


class MemoryEventTests(TestCase):
    async def test_memory_store_records_events(self) -> None:
        """The fake records the same ``message.suppressed`` event the SQLite store does."""
        store = MemoryStore(Clock())
        await store.add_suppression(Suppression("alice", "a@example.net", "manual", "api", 1.0))
        message = make_message(recipients=("a@example.net",))
        await store.accept(message)
        [event] = store.events
        self.assertEqual(
            (event.type, event.message_id, event.recipient, event.details["reason"]),
            ("message.suppressed", message.id, "a@example.net", "manual"),
        )


class MigrationTests(TestCase):
    def test_from_version_10(self) -> None:
        """A version 10 queue gains the suppressed recipients' table and keeps its mail."""
        directory = Path(self.mktemp())
        directory.mkdir()
        old = sqlite3.connect(database_path(directory))
        old.executescript(schema_v10())
        old.execute(
            "INSERT INTO messages VALUES ('m', 'app', 'a@x', 'api', 0, 0, 1.0, 1, 'h', x'00')"
        )
        old.commit()
        old.execute("PRAGMA user_version=10")
        old.close()
        connection = open_writable(directory)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)
        self.assertEqual(connection.execute("SELECT id FROM messages").fetchall(), [("m",)])
        self.assertEqual(
            connection.execute("SELECT count(*) FROM suppressed_recipients").fetchone()[0], 0
        )
