"""The IInboundStore contract (spool, claim webhooks, record outcomes, DSN hand-over,
status, counts), run against the SQLite store and MemoryStore alike, plus the migration of
a version-2 queue and a restart in the middle of retries."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from rail.inbound.model import (
    IInboundStore,
    InboundMessage,
    WebhookJob,
    WebhookResult,
    WebhookTarget,
)
from rail.store.ids import new_message_id
from rail.store.model import BounceReport, NewMessage, QueueFullError
from rail.store.schema import SCHEMA_VERSION, database_path
from rail.testing import MemoryStore
from tests.store.test_contract import open_postgres, open_sqlite
from tests.support.postgres import postgres_dsn

_NOW = 1_800_000_000.0
_AUTH = {"spf": {"result": "pass"}, "dkim": [{"result": "none"}], "dmarc": {"result": "none"}}


def make_inbound(
    *,
    sender: str = "someone@remote.example",
    targets: tuple[WebhookTarget, ...] = (
        WebhookTarget("app1", "https://app1.example/hook", ("a@rail.test", "b@rail.test")),
        WebhookTarget("app2", "https://app2.example/hook", ("c@rail.test",)),
    ),
    received_at: float = _NOW,
    bounce_allowed: bool = True,
) -> InboundMessage:
    return InboundMessage(
        id=new_message_id(received_at),
        sender=sender,
        targets=targets,
        data=b"Received: x\r\nSubject: hi\r\n\r\nbody\r\n",
        received_at=received_at,
        subject="hi",
        authentication=_AUTH,
        bounce_allowed=bounce_allowed,
        peer="192.0.2.1",
        tls=True,
    )


def _dsn_for(report: BounceReport) -> NewMessage:
    text = ",".join(f"{r.address}={r.reply}" for r in report.bounced)
    return NewMessage(
        id=new_message_id(_NOW + 1),
        client=report.client,
        sender="",
        recipients=(report.sender,),
        data=f"Subject: bounce {report.message_id}\r\n\r\n{text}\r\n".encode(),
        channel="smtp",
        received_at=_NOW + 1,
    )


class _InboundContract:
    """Behaviour every IInboundStore shows; mixed into a TestCase providing ``make_store``."""

    store: Any

    def make_store(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = self.make_store()
        self.woken = 0
        self.offered: list[WebhookJob] = []
        self.store.observe_inbound(self._wake)

    def _wake(self, jobs: list[WebhookJob]) -> None:
        self.woken += 1
        self.offered.extend(jobs)

    def test_provides_interface(self) -> None:
        """The store fully provides IInboundStore."""
        self.assertTrue(verifyObject(IInboundStore, self.store))  # type: ignore[attr-defined]

    async def test_spool_and_claim(self) -> None:
        """One job per client, due at receipt, carrying the message, its envelope and
        authentication; observers are handed exactly the jobs a claim reads; excluded
        keys and the limit are honoured."""
        message = make_inbound()
        accepted = await self.store.accept_inbound(message)
        self.assertEqual((accepted.id, accepted.recipients), (message.id, 2))
        self.assertEqual(self.woken, 1)
        self.assertEqual(await self.store.claim_webhooks(_NOW - 1, 10, frozenset()), [])
        jobs = sorted(await self.store.claim_webhooks(_NOW, 10, frozenset()), key=str)
        self.assertEqual([j.client for j in jobs], ["app1", "app2"])
        first = jobs[0]
        self.assertEqual(first.recipients, ("a@rail.test", "b@rail.test"))
        self.assertEqual(first.url, "https://app1.example/hook")
        self.assertEqual(
            (first.sender, first.subject, first.data, first.attempts),
            (message.sender, "hi", message.data, 0),
        )
        self.assertEqual(first.authentication, _AUTH)
        self.assertTrue(first.bounce_allowed)
        left = await self.store.claim_webhooks(_NOW, 10, frozenset({(message.id, "app1")}))
        self.assertEqual([j.client for j in left], ["app2"])
        self.assertEqual(len(await self.store.claim_webhooks(_NOW, 1, frozenset())), 1)
        self.assertEqual(sorted(self.offered, key=str), jobs)

    async def test_deferred_then_delivered(self) -> None:
        """A deferred job is due again at its next attempt time; delivered is final and
        a late duplicate result does not change it."""
        message = make_inbound(targets=(WebhookTarget("app1", "https://h/", ("a@rail.test",)),))
        await self.store.accept_inbound(message)
        await self.store.record_webhook(
            WebhookResult(message.id, "app1", _NOW, "deferred", "HTTP 500", _NOW + 30)
        )
        self.assertEqual(await self.store.claim_webhooks(_NOW + 29, 10, frozenset()), [])
        (job,) = await self.store.claim_webhooks(_NOW + 30, 10, frozenset())
        self.assertEqual(job.attempts, 1)
        await self.store.record_webhook(
            WebhookResult(message.id, "app1", _NOW + 30, "delivered", "HTTP 200")
        )
        await self.store.record_webhook(
            WebhookResult(message.id, "app1", _NOW + 31, "failed", "HTTP 404")
        )
        status = await self.store.inbound_status("app1", message.id)
        self.assertEqual(
            (status.status, status.attempts, status.last_reply, status.next_attempt_at),
            ("delivered", 2, "HTTP 200", None),
        )
        self.assertEqual(await self.store.claim_webhooks(_NOW + 1e6, 10, frozenset()), [])

    async def test_failure_queues_one_dsn(self) -> None:
        """A final failure queues the DSN for outbound delivery, listing the client's
        recipients with the reply; it is made once."""
        message = make_inbound()
        await self.store.accept_inbound(message)
        reports: list[BounceReport] = []

        def dsn(report: BounceReport) -> NewMessage:
            reports.append(report)
            return _dsn_for(report)

        notification = await self.store.record_webhook(
            WebhookResult(message.id, "app1", _NOW + 5, "failed", "HTTP 404 Not Found"), dsn
        )
        self.assertIsNotNone(notification)
        (report,) = reports
        self.assertEqual(report.sender, message.sender)
        self.assertEqual(
            [(b.address, b.reply) for b in report.bounced],
            [("a@rail.test", "HTTP 404 Not Found"), ("b@rail.test", "HTTP 404 Not Found")],
        )
        (job,) = await self.store.claim(_NOW + 10, 10, frozenset())
        self.assertEqual(job.message_id, notification.id)
        again = await self.store.record_webhook(
            WebhookResult(message.id, "app1", _NOW + 6, "failed", "HTTP 404"), dsn
        )
        self.assertIsNone(again)
        self.assertEqual(len(reports), 1)

    async def test_no_dsn_when_bounces_not_allowed(self) -> None:
        """A message whose sender is null or failed SPF/DMARC gets no DSN."""
        message = make_inbound(bounce_allowed=False)
        await self.store.accept_inbound(message)
        called: list[BounceReport] = []
        notification = await self.store.record_webhook(
            WebhookResult(message.id, "app1", _NOW, "failed", "HTTP 410"),
            lambda r: called.append(r),  # type: ignore[func-returns-value]
        )
        self.assertIsNone(notification)
        self.assertEqual(called, [])

    async def test_status_only_for_addressed_client(self) -> None:
        """Each client sees only its own job; others and unknown ids get None."""
        message = make_inbound()
        await self.store.accept_inbound(message)
        status = await self.store.inbound_status("app2", message.id)
        self.assertEqual(status.recipients, ("c@rail.test",))
        self.assertEqual((status.status, status.size), ("queued", len(message.data)))
        self.assertEqual(status.authentication, _AUTH)
        self.assertIsNone(await self.store.inbound_status("app3", message.id))
        self.assertIsNone(await self.store.inbound_status("app1", new_message_id(_NOW)))

    async def test_counts(self) -> None:
        """Jobs are counted by status, every status present."""
        message = make_inbound()
        await self.store.accept_inbound(message)
        await self.store.record_webhook(
            WebhookResult(message.id, "app2", _NOW, "delivered", "HTTP 204")
        )
        self.assertEqual(
            await self.store.webhook_counts(),
            {"queued": 1, "deferred": 0, "delivered": 1, "failed": 0},
        )


class MemoryInboundTests(_InboundContract, TestCase):
    def make_store(self) -> Any:
        return MemoryStore(Clock())

    def test_full(self) -> None:
        """A full store refuses with QueueFullError."""
        self.store.full = True
        self.failureResultOf(self.store.accept_inbound(make_inbound()), QueueFullError)


class _Restart:
    """A store reopened on the same database; mixed into the engines' suites."""

    store: Any

    def reopen(self) -> Any:
        raise NotImplementedError

    async def test_restart_resumes_retries(self) -> None:
        """A job deferred before a restart is due again, on schedule, after it."""
        message = make_inbound()
        await self.store.accept_inbound(message)
        await self.store.record_webhook(
            WebhookResult(message.id, "app1", _NOW, "deferred", "HTTP 503", _NOW + 60)
        )
        await self.store.record_webhook(
            WebhookResult(message.id, "app2", _NOW, "delivered", "HTTP 200")
        )
        await self.store.close()
        reopened = self.reopen()
        self.assertEqual(await reopened.claim_webhooks(_NOW + 59, 10, frozenset()), [])
        (job,) = await reopened.claim_webhooks(_NOW + 60, 10, frozenset())
        self.assertEqual((job.client, job.attempts), ("app1", 1))


class PostgresInboundTests(_Restart, _InboundContract, TestCase):
    def make_store(self) -> Any:
        self.dsn = postgres_dsn(self)
        return open_postgres(self, self.dsn)

    def reopen(self) -> Any:
        return open_postgres(self, self.dsn)


class SQLiteInboundTests(_Restart, _InboundContract, TestCase):
    def make_store(self) -> Any:
        self.directory = Path(self.mktemp()) / "queue"
        return open_sqlite(self, self.directory)

    def reopen(self) -> Any:
        return open_sqlite(self, self.directory)

    def test_migrates_version_2(self) -> None:
        """A version-2 queue (issue 4's schema) gains the inbound tables, rows kept."""
        directory = Path(self.mktemp()) / "old"
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
                remote_mta TEXT, PRIMARY KEY (message_id, idx)) WITHOUT ROWID;
            CREATE INDEX recipients_pending ON recipients (next_attempt_at)
                WHERE status IN ('queued', 'deferred');
            CREATE TABLE idempotency (client TEXT NOT NULL, key TEXT NOT NULL,
                fingerprint TEXT NOT NULL, message_id TEXT NOT NULL,
                recipients INTEGER NOT NULL, created_at REAL NOT NULL,
                PRIMARY KEY (client, key)) WITHOUT ROWID;
            INSERT INTO messages VALUES ('01OLD', 'alice', 'a@x.example', 'smtp', 0, 0,
                1800000000.0, 3,
                'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad', x'616263');
            INSERT INTO recipients VALUES ('01OLD', 0, 'b@y.example', 'queued', 0,
                1800000000.0, NULL, 1800000000.0, NULL);
            PRAGMA user_version = 2;
            """
        )
        connection.close()
        store = open_sqlite(self, directory)
        check = sqlite3.connect(database_path(directory))
        self.addCleanup(check.close)
        self.assertEqual(check.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)
        d = store.accept_inbound(make_inbound())
        d.addCallback(lambda _: store.claim(_NOW, 10, frozenset()))
        return d.addCallback(lambda jobs: self.assertEqual([j.data for j in jobs], [b"abc"]))
