"""The IQueueStore contract, run against the SQLite store, the PostgreSQL store and
MemoryStore alike."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from rail.store.ids import new_message_id
from rail.store.model import (
    Accepted,
    Conflict,
    IdempotencyKey,
    IQueueStore,
    MessageMeta,
    NewMessage,
    Replayed,
    StoreUnavailableError,
    SuppressedRecipient,
)
from rail.store.pg import connect
from rail.store.postgres import PostgresStore
from rail.store.sqlite import SQLiteStore
from rail.store.suppressions import Suppression
from rail.testing import MemoryStore
from tests.support.postgres import postgres_dsn

_BASE_TIME = 1_750_000_000.0
_sequence = itertools.count()


def make_message(
    *,
    client: str = "alice",
    recipients: tuple[str, ...] = ("bob@example.net",),
    data: bytes | None = None,
    received_at: float | None = None,
    message_id: str | None = None,
) -> NewMessage:
    """A valid NewMessage with a fresh ULID; each call is a little later than the last."""
    n = next(_sequence)
    when = _BASE_TIME + n if received_at is None else received_at
    mid = message_id or new_message_id(when)
    return NewMessage(
        id=mid,
        client=client,
        sender=f"{client}@example.com",
        recipients=recipients,
        data=data if data is not None else f"Subject: {n}\r\n\r\nHello {n}\r\n".encode(),
        channel="api",
        received_at=when,
    )


def open_sqlite(test: TestCase, directory: Path | None = None, **limits: int) -> SQLiteStore:
    """A real SQLiteStore in a fresh temporary directory, closed when ``test`` ends."""
    limits.setdefault("max_queued", 10_000)
    limits.setdefault("min_free_bytes", 0)
    store = SQLiteStore.open(
        directory or Path(test.mktemp()) / "queue",
        reactor,
        max_queued=limits["max_queued"],
        min_free_bytes=limits["min_free_bytes"],
    )
    test.addCleanup(store.close)
    store.start()
    return store


def open_postgres(test: TestCase, dsn: str | None = None, **limits: int) -> PostgresStore:
    """A real PostgresStore on a fresh database of the test cluster (or ``dsn``), closed
    when ``test`` ends; skips when PostgreSQL is not installed. Its claims take no leases:
    these tests pin one node's contract, in which a result may be recorded for a job no
    claim took (the leases of several nodes are tests/store/test_leases_pg.py's)."""
    store = PostgresStore.open(
        dsn or postgres_dsn(test),
        reactor,
        max_queued=limits.get("max_queued", 10_000),
        leases=False,
    )
    test.addCleanup(store.close)
    store.start()
    return store


def pg_sql(dsn: str, statement: str, *args: object) -> list[tuple[Any, ...]]:
    """Run one statement (qmark parameters) on the database of ``dsn`` from a connection
    of its own, as an operator or a damaged disk would; its rows, if any."""
    connection = connect(dsn)
    try:
        cursor = connection.execute(statement, args)
        return cursor.fetchall() if cursor.description is not None else []
    finally:
        connection.close()


class _StoreContract:
    """Behaviour every IQueueStore shows; mixed into a TestCase that provides
    ``make_store``."""

    def make_store(self) -> IQueueStore:
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = self.make_store()

    def test_provides_interface(self) -> None:
        """The store fully provides IQueueStore."""
        self.assertTrue(verifyObject(IQueueStore, self.store))

    async def test_accept_then_status(self) -> None:
        """An accepted message reads back with its envelope and every recipient queued at
        ``received_at``, never tried."""
        message = make_message(recipients=("a@example.net", "b@example.net"))
        result = await self.store.accept(message)
        status = await self.store.status("alice", message.id)
        self.assertEqual(result, Accepted(message.id, 2))
        self.assertEqual(
            (status.id, status.client, status.sender, status.channel, status.size),
            (message.id, "alice", "alice@example.com", "api", len(message.data)),
        )
        self.assertEqual(status.received_at, message.received_at)
        self.assertEqual(status.status, "queued")
        for recipient in status.recipients:
            self.assertEqual(recipient.status, "queued")
            self.assertEqual(recipient.attempts, 0)
            self.assertIsNone(recipient.last_reply)
            self.assertEqual(recipient.next_attempt_at, message.received_at)
            self.assertEqual(recipient.updated_at, message.received_at)

    async def test_recipients_keep_their_order(self) -> None:
        """Recipients come back in the order they were given, not sorted."""
        order = ("zed@example.net", "amy@example.net", "max@example.net", "amy@example.org")
        message = make_message(recipients=order)
        await self.store.accept(message)
        status = await self.store.status("alice", message.id)
        self.assertEqual(tuple(r.address for r in status.recipients), order)

    async def test_other_client_sees_nothing(self) -> None:
        """A client asking about another client's message gets None, as for an unknown id."""
        message = make_message(client="alice")
        await self.store.accept(message)
        self.assertIsNone(await self.store.status("mallory", message.id))
        self.assertIsNone(await self.store.status("alice", new_message_id(_BASE_TIME)))

    async def test_replay_same_fingerprint(self) -> None:
        """The same key and fingerprint answers the first message's id and recipient count,
        and stores nothing new."""
        first = make_message(recipients=("a@example.net", "b@example.net"))
        second = make_message()
        key = IdempotencyKey("req-1", "fp-1")
        self.assertEqual(await self.store.accept(first, key), Accepted(first.id, 2))
        self.assertEqual(await self.store.accept(second, key), Replayed(first.id, 2))
        self.assertIsNone(await self.store.status("alice", second.id))

    async def test_conflict_other_fingerprint(self) -> None:
        """The same key with another fingerprint is a Conflict naming the first message,
        and stores nothing new."""
        first = make_message()
        second = make_message()
        await self.store.accept(first, IdempotencyKey("req-1", "fp-1"))
        result = await self.store.accept(second, IdempotencyKey("req-1", "fp-2"))
        self.assertEqual(result, Conflict(first.id))
        self.assertIsNone(await self.store.status("alice", second.id))

    async def test_keys_belong_to_one_client(self) -> None:
        """Two clients may use the same key independently."""
        first = make_message(client="alice")
        second = make_message(client="bob")
        key = IdempotencyKey("req-1", "fp-1")
        self.assertEqual(await self.store.accept(first, key), Accepted(first.id, 1))
        self.assertEqual(await self.store.accept(second, key), Accepted(second.id, 1))

    async def test_concurrent_same_key(self) -> None:
        """Two accepts with the same key submitted together: the first wins, the second is
        a replay or a conflict according to its fingerprint."""
        first, second, third = make_message(), make_message(), make_message()
        results = [
            self.store.accept(first, IdempotencyKey("k", "fp")),
            self.store.accept(second, IdempotencyKey("k", "fp")),
            self.store.accept(third, IdempotencyKey("k", "other")),
        ]
        self.assertEqual(
            [await d for d in results],
            [Accepted(first.id, 1), Replayed(first.id, 1), Conflict(first.id)],
        )

    async def test_key_forgotten_after_a_day(self) -> None:
        """A key is honoured for 24 hours of ``received_at`` time, then may be reused."""
        key = IdempotencyKey("req-1", "fp-1")
        first = make_message(received_at=_BASE_TIME)
        within = make_message(received_at=_BASE_TIME + 23 * 3600)
        after = make_message(received_at=_BASE_TIME + 24 * 3600 + 1)
        await self.store.accept(first, key)
        self.assertEqual(await self.store.accept(within, key), Replayed(first.id, 1))
        self.assertEqual(await self.store.accept(after, key), Accepted(after.id, 1))
        self.assertEqual(await self.store.accept(make_message(), key), Replayed(after.id, 1))

    async def test_duplicate_id_is_refused(self) -> None:
        """Accepting a second message under an id already stored fails as a store error and
        leaves the first intact."""
        first = make_message()
        clash = make_message(client="bob", message_id=first.id)
        await self.store.accept(first)
        with self.assertRaises(StoreUnavailableError):
            await self.store.accept(clash)
        status = await self.store.status("alice", first.id)
        self.assertEqual(status.client, "alice")
        self.assertIsNone(await self.store.status("bob", first.id))

    async def test_suppressed_recipients_are_not_queued(self) -> None:
        """A recipient on the client's suppression list (in any case) is accepted but not
        queued: the answer lists it with the entry's reason, its status is ``suppressed``
        (never attempted), and only the other recipient is claimed."""
        store: Any = self.store
        await store.add_suppression(
            Suppression("alice", "dead@example.net", "hard_bounce", "dsn", 5.0)
        )
        message = make_message(recipients=("live@example.net", "Dead@Example.NET"))
        result = await store.accept(message)
        self.assertEqual(
            result,
            Accepted(message.id, 2, (SuppressedRecipient("Dead@Example.NET", "hard_bounce"),)),
        )
        status = await store.status("alice", message.id)
        self.assertEqual(status.status, "queued")
        self.assertEqual(
            [(r.address, r.status, r.attempts, r.next_attempt_at) for r in status.recipients],
            [
                ("live@example.net", "queued", 0, message.received_at),
                ("Dead@Example.NET", "suppressed", 0, None),
            ],
        )
        self.assertEqual(status.recipients[1].last_reply, "suppressed: hard_bounce")
        jobs = await store.claim(message.received_at + 1, 10, frozenset())
        self.assertEqual(
            [[r.address for r in job.recipients] for job in jobs], [["live@example.net"]]
        )

    async def test_all_suppressed_is_final_at_once(self) -> None:
        """A message whose every recipient is suppressed is still accepted and recorded,
        its status is ``suppressed`` at once, and nothing of it is ever claimed; another
        client's list does not apply."""
        store: Any = self.store
        await store.add_suppression(Suppression("alice", "a@example.net", "complaint", "arf", 5.0))
        await store.add_suppression(Suppression("alice", "b@example.net", "manual", "api", 6.0))
        message = make_message(recipients=("a@example.net", "b@example.net"))
        result = await store.accept(message)
        self.assertEqual(
            result.suppressed,
            (
                SuppressedRecipient("a@example.net", "complaint"),
                SuppressedRecipient("b@example.net", "manual"),
            ),
        )
        status = await store.status("alice", message.id)
        self.assertEqual(status.status, "suppressed")
        self.assertEqual(await store.claim(message.received_at + 1e6, 10, frozenset()), [])
        other = make_message(client="bob", recipients=("a@example.net",))
        self.assertEqual(await store.accept(other), Accepted(other.id, 1))

    async def test_replay_answers_the_same_suppressed(self) -> None:
        """A replay answers the suppressed recipients of the first acceptance, even after
        the address was taken off the list."""
        store: Any = self.store
        await store.add_suppression(Suppression("alice", "a@example.net", "manual", "api", 5.0))
        first = make_message(recipients=("a@example.net", "b@example.net"))
        key = IdempotencyKey("req-s", "fp")
        accepted = await store.accept(first, key)
        await store.remove_suppression("alice", "a@example.net")
        replayed = await store.accept(make_message(), key)
        self.assertEqual(replayed, Replayed(first.id, 2, accepted.suppressed))
        self.assertEqual(accepted.suppressed, (SuppressedRecipient("a@example.net", "manual"),))

    async def test_meta_is_echoed(self) -> None:
        """The request id, tag and metadata a message was accepted with come back in its
        status."""
        meta = MessageMeta(request_id="r-1", tag="welcome", metadata={"user": "42"})
        message = attrs.evolve(make_message(), meta=meta)
        await self.store.accept(message)
        status = await self.store.status("alice", message.id)
        self.assertEqual(status.meta, meta)

    async def test_accept_many(self) -> None:
        """accept_many answers each item in order as accept would: accepted, replayed,
        conflicting, or refused alone."""
        store: Any = self.store
        first, second, third = make_message(), make_message(), make_message()
        clash = make_message(client="bob", message_id=first.id)
        results = await store.accept_many(
            [
                (first, IdempotencyKey("k1", "fp")),
                (second, IdempotencyKey("k1", "fp")),
                (third, IdempotencyKey("k1", "other")),
                (clash, None),
            ]
        )
        self.assertEqual(
            results[:3], [Accepted(first.id, 1), Replayed(first.id, 1), Conflict(first.id)]
        )
        self.assertIsInstance(results[3], StoreUnavailableError)
        self.assertEqual((await store.status("alice", first.id)).client, "alice")

    async def test_closed_store_refuses(self) -> None:
        """After close, accept fails with StoreUnavailableError."""
        await self.store.close()
        with self.assertRaises(StoreUnavailableError):
            await self.store.accept(make_message())


class SQLiteStoreContractTests(_StoreContract, TestCase):
    def make_store(self) -> IQueueStore:
        return open_sqlite(self)


class PostgresStoreContractTests(_StoreContract, TestCase):
    def make_store(self) -> IQueueStore:
        return open_postgres(self)


class MemoryStoreContractTests(_StoreContract, TestCase):
    def make_store(self) -> IQueueStore:
        return MemoryStore(Clock())
