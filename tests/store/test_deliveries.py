"""The IDeliveryQueue contract (claim, record, DSN hand-over, counts), run against the
SQLite store and MemoryStore alike, plus the schema migration from version 1."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from rail.store.ids import new_message_id
from rail.store.model import (
    Accepted,
    BounceReport,
    IDeliveryQueue,
    JobResult,
    NewMessage,
    RecipientUpdate,
    StoreUnavailableError,
)
from rail.store.schema import SCHEMA_VERSION, database_path
from rail.testing import MemoryStore
from tests.store.test_contract import make_message, open_postgres, open_sqlite

_NOW = 1_800_000_000.0


def _dsn_for(report: BounceReport) -> NewMessage:
    """A stand-in DSN: the contract is about when it is made, not what it says."""
    text = ",".join(f"{r.address}={r.reply}@{r.remote_mta}" for r in report.bounced)
    return NewMessage(
        id=new_message_id(_NOW + 1),
        client=report.client,
        sender="",
        recipients=(report.sender,),
        data=f"Subject: bounce {report.message_id}\r\n\r\n{text}\r\n".encode(),
        channel="api",
        received_at=_NOW + 1,
    )


class _DeliveryContract:
    """Behaviour every IDeliveryQueue shows; mixed into a TestCase providing ``make_store``."""

    def make_store(self) -> IDeliveryQueue:
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = self.make_store()
        self.woken = 0
        self.store.observe_accepted(self._wake)

    def _wake(self) -> None:
        self.woken += 1

    def test_provides_interface(self) -> None:
        """The store fully provides IDeliveryQueue."""
        self.assertTrue(verifyObject(IDeliveryQueue, self.store))

    async def test_claim_groups_by_domain(self) -> None:
        """One job per (message, recipient domain), domains lower-cased, recipients in
        message order, with the message's envelope and bytes; nothing before it is due."""
        message = make_message(
            recipients=("a@Example.NET", "b@other.org", "c@example.net"), received_at=_NOW
        )
        await self.store.accept(message)
        self.assertEqual(self.woken, 1)
        self.assertEqual(await self.store.claim(_NOW - 1, 10, frozenset()), [])
        jobs = sorted(await self.store.claim(_NOW, 10, frozenset()), key=lambda j: j.domain)
        self.assertEqual([j.domain for j in jobs], ["example.net", "other.org"])
        self.assertEqual(
            [r.address for r in jobs[0].recipients], ["a@Example.NET", "c@example.net"]
        )
        self.assertEqual([r.idx for r in jobs[0].recipients], [0, 2])
        self.assertEqual(jobs[0].data, message.data)
        self.assertEqual((jobs[0].sender, jobs[0].client), (message.sender, message.client))
        self.assertEqual(jobs[1].key, (message.id, "other.org"))

    async def test_claim_limit_and_exclude(self) -> None:
        """``limit`` bounds the jobs, oldest due first, and excluded keys are skipped
        without shrinking the batch."""
        messages = [make_message(received_at=_NOW + i) for i in range(5)]
        for message in messages:
            await self.store.accept(message)
        jobs = await self.store.claim(_NOW + 10, 2, frozenset())
        self.assertEqual([j.message_id for j in jobs], [m.id for m in messages[:2]])
        exclude = frozenset(job.key for job in jobs)
        jobs = await self.store.claim(_NOW + 10, 2, exclude)
        self.assertEqual([j.message_id for j in jobs], [m.id for m in messages[2:4]])

    async def test_deferred_then_sent(self) -> None:
        """A deferred recipient is due again only at its next attempt time; attempts,
        last reply and status read back through status()."""
        message = make_message(recipients=("a@example.net",), received_at=_NOW)
        await self.store.accept(message)
        await self.store.record(
            JobResult(
                message.id,
                _NOW + 5,
                (RecipientUpdate(0, "deferred", "451 4.3.0 later", "mx.example.net", _NOW + 65),),
            )
        )
        self.assertEqual(await self.store.claim(_NOW + 64, 10, frozenset()), [])
        (job,) = await self.store.claim(_NOW + 65, 10, frozenset())
        self.assertEqual(
            (job.recipients[0].attempts, job.recipients[0].last_reply), (1, "451 4.3.0 later")
        )
        status = await self.store.status(message.client, message.id)
        self.assertEqual(status.status, "deferred")
        self.assertEqual(status.recipients[0].next_attempt_at, _NOW + 65)
        await self.store.record(
            JobResult(message.id, _NOW + 70, (RecipientUpdate(0, "sent", "250 2.0.0 ok"),))
        )
        status = await self.store.status(message.client, message.id)
        self.assertEqual((status.status, status.recipients[0].attempts), ("sent", 2))
        self.assertIsNone(status.recipients[0].next_attempt_at)
        self.assertEqual(status.recipients[0].updated_at, _NOW + 70)
        self.assertEqual(await self.store.claim(_NOW + 1e6, 10, frozenset()), [])
        self.assertEqual(
            await self.store.recipient_counts(),
            {"queued": 0, "deferred": 0, "sent": 1, "bounced": 0, "failed": 0, "deleted": 0},
        )

    async def test_dsn_at_once_for_each_result_with_bounces(self) -> None:
        """A recipient's final failure is reported at once, not held until its siblings
        are final: each result in which recipients bounced makes one DSN listing just
        those, with their replies and remote MTAs; it is queued and wakes the scheduler.
        Recording the same result again makes none."""
        message = make_message(
            recipients=("a@one.example", "b@two.example", "c@two.example", "d@two.example"),
            received_at=_NOW,
        )
        await self.store.accept(message)
        reports: list[BounceReport] = []

        def dsn(report: BounceReport) -> NewMessage:
            reports.append(report)
            return _dsn_for(report)

        woken = self.woken
        first = await self.store.record(
            JobResult(
                message.id, _NOW + 1, (RecipientUpdate(0, "bounced", "550 5.1.1 no", "mx1"),)
            ),
            dsn,
        )
        self.assertIsNotNone(first)
        self.assertEqual(
            [[(b.address, b.reply, b.remote_mta) for b in r.bounced] for r in reports],
            [[("a@one.example", "550 5.1.1 no", "mx1")]],
        )
        self.assertEqual(self.woken, woken + 1)
        self.assertEqual((await self.store.status(message.client, message.id)).status, "queued")
        second = await self.store.record(
            JobResult(
                message.id,
                _NOW + 2,
                (
                    RecipientUpdate(1, "sent", "250 ok", "mx2"),
                    RecipientUpdate(2, "bounced", "552 5.2.2 full", "mx2"),
                    RecipientUpdate(3, "deferred", "451 later", "mx2", _NOW + 60),
                ),
            ),
            dsn,
        )
        self.assertEqual(
            [(b.address, b.reply, b.remote_mta) for b in reports[1].bounced],
            [("c@two.example", "552 5.2.2 full", "mx2")],
        )
        self.assertEqual((reports[1].sender, reports[1].data), (message.sender, message.data))
        self.assertEqual(self.woken, woken + 2)
        jobs = await self.store.claim(_NOW + 10, 10, frozenset())
        self.assertEqual(
            sorted((job.message_id, job.sender) for job in jobs),
            sorted([(first.id, ""), (second.id, "")]),
        )
        again = await self.store.record(
            JobResult(message.id, _NOW + 3, (RecipientUpdate(2, "bounced", "x"),)), dsn
        )
        self.assertIsNone(again)
        self.assertEqual(len(reports), 2)
        last = await self.store.record(
            JobResult(message.id, _NOW + 61, (RecipientUpdate(3, "sent", "250 ok", "mx2"),)), dsn
        )
        self.assertIsNone(last)
        self.assertEqual(len(reports), 2)

    async def test_no_dsn_when_all_sent(self) -> None:
        """A message whose recipients were all sent makes no DSN."""
        message = make_message(received_at=_NOW)
        await self.store.accept(message)
        result = await self.store.record(
            JobResult(message.id, _NOW, (RecipientUpdate(0, "sent", "250 ok"),)), _dsn_for
        )
        self.assertIsNone(result)


class SQLiteDeliveryTests(_DeliveryContract, TestCase):
    def make_store(self) -> IDeliveryQueue:
        return open_sqlite(self)

    async def test_failed_record_fails_alone(self) -> None:
        """A result whose DSN cannot be stored fails only its own caller; acceptances and
        other results written in the same batch commit."""
        store = open_sqlite(self)
        first, second = make_message(received_at=_NOW), make_message(received_at=_NOW)
        await store.accept(first)
        await store.accept(second)
        taken = new_message_id(_NOW)
        await store.accept(make_message(received_at=_NOW, message_id=taken))

        def clashing(report: BounceReport) -> NewMessage:
            return attrs.evolve(_dsn_for(report), id=taken)

        bad = store.record(
            JobResult(first.id, _NOW, (RecipientUpdate(0, "bounced", "550 5.1.1 no"),)), clashing
        )
        good = store.record(JobResult(second.id, _NOW, (RecipientUpdate(0, "sent", "250 ok"),)))
        third = store.accept(make_message(received_at=_NOW))
        with self.assertRaises(StoreUnavailableError):
            await bad
        await good
        await third
        self.assertEqual((await store.status(first.client, first.id)).status, "queued")
        self.assertEqual((await store.status(second.client, second.id)).status, "sent")

    async def test_raising_dsn_builder_fails_alone(self) -> None:
        """A DSN builder that raises (a bug, or a poison header section) fails only the
        record that called it, rolled back; the acceptances written in the same batch
        commit."""
        store = open_sqlite(self)
        message = make_message(received_at=_NOW)
        await store.accept(message)

        def broken(report: BounceReport) -> NewMessage:
            raise RuntimeError("boom")

        bad = store.record(
            JobResult(message.id, _NOW, (RecipientUpdate(0, "bounced", "550 5.1.1 no"),)), broken
        )
        other = store.accept(make_message(received_at=_NOW))
        with self.assertRaises(StoreUnavailableError):
            await bad
        self.assertIsInstance(await other, Accepted)
        self.assertEqual((await store.status(message.client, message.id)).status, "queued")

    async def test_dsn_survives_restart(self) -> None:
        """The bounce and its DSN are committed together: a reopened store has both."""
        directory = Path(self.mktemp()) / "queue"
        store = open_sqlite(self, directory)
        message = make_message(received_at=_NOW)
        await store.accept(message)
        notification = await store.record(
            JobResult(message.id, _NOW, (RecipientUpdate(0, "bounced", "550 5.1.1 no"),)),
            _dsn_for,
        )
        await store.close()
        reopened = open_sqlite(self, directory)
        (job,) = await reopened.claim(_NOW + 10, 10, frozenset())
        self.assertEqual(job.message_id, notification.id)
        self.assertEqual(job.data, notification.data)

    def test_migrates_version_1(self) -> None:
        """A version-1 queue (issue 3's schema) is upgraded in place through every later
        version, rows kept."""
        directory = Path(self.mktemp()) / "queue"
        directory.mkdir(parents=True)
        connection = sqlite3.connect(database_path(directory))
        connection.executescript(
            """
            CREATE TABLE messages (id TEXT PRIMARY KEY, client TEXT NOT NULL,
                sender TEXT NOT NULL, channel TEXT NOT NULL, smtputf8 INTEGER NOT NULL,
                eight_bit INTEGER NOT NULL, received_at REAL NOT NULL, size INTEGER NOT NULL,
                sha256 TEXT NOT NULL, data BLOB NOT NULL);
            CREATE TABLE recipients (message_id TEXT NOT NULL, idx INTEGER NOT NULL,
                address TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
                next_attempt_at REAL, last_reply TEXT, updated_at REAL NOT NULL,
                PRIMARY KEY (message_id, idx)) WITHOUT ROWID;
            CREATE INDEX recipients_due ON recipients (status, next_attempt_at);
            CREATE TABLE idempotency (client TEXT NOT NULL, key TEXT NOT NULL,
                fingerprint TEXT NOT NULL, message_id TEXT NOT NULL,
                recipients INTEGER NOT NULL, created_at REAL NOT NULL,
                PRIMARY KEY (client, key)) WITHOUT ROWID;
            INSERT INTO messages VALUES ('01OLD', 'alice', 'a@x.example', 'smtp', 0, 0,
                1800000000.0, 3,
                'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', x'616263');
            INSERT INTO recipients VALUES ('01OLD', 0, 'b@y.example', 'queued', 0,
                1800000000.0, NULL, 1800000000.0);
            PRAGMA user_version = 1;
            """
        )
        connection.close()
        store = open_sqlite(self, directory)
        check = sqlite3.connect(database_path(directory))
        self.addCleanup(check.close)
        self.assertEqual(check.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)
        claimed = store.claim(_NOW, 10, frozenset()).addCallback(
            lambda jobs: self.assertEqual([j.data for j in jobs], [b"abc"])
        )
        # Version 4 allows the ``failed`` status of a quarantined recipient.
        claimed.addCallback(lambda _: store.quarantine("01OLD", "error", "test", _NOW))
        return claimed.addCallback(self.assertTrue)


class PostgresDeliveryTests(_DeliveryContract, TestCase):
    def make_store(self) -> Any:
        return open_postgres(self)


class MemoryDeliveryTests(_DeliveryContract, TestCase):
    def make_store(self) -> IDeliveryQueue:
        return MemoryStore(Clock())
