"""Two nodes on one queue, through the store's own interface: what a claim holds, what a
node that dies leaves behind, and that a job taken over is applied once.

Time is the ``now`` each call is given (the runners read it from their clock), so the
lease's end is crossed without waiting. The stores here share one SQLite file with
leases turned on (``node=``), which production never does (SQLite's queue belongs to one
process); the same contract runs on PostgreSQL in ``tests/store/test_leases_pg.py``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from rail.inbound.model import WebhookResult
from rail.store.model import ILeases, JobResult, QueueLeases, RecipientUpdate, Stale
from rail.store.schema import database_path
from rail.store.sqlite import SQLiteStore
from rail.testing import MemoryStore
from tests.store.test_contract import make_message
from tests.store.test_inbound import make_inbound

_T0 = 1_800_000_000.0
_LEASE = 60.0


class _FailoverContract:
    """Mixed into a TestCase providing ``node(name)`` (a started store on the shared
    database, writing ``name`` into the rows it claims) and ``scalar(sql)``."""

    def node(self, name: str) -> Any:
        raise NotImplementedError

    def scalar(self, sql: str) -> Any:
        raise NotImplementedError

    def setUp(self) -> None:
        self.a = self.node("A")
        self.b = self.node("B")
        self.stale: list[Stale] = []
        self.a.observe_stale(self.stale.append)

    def test_provides_leases(self) -> None:
        """Each node's store keeps leases of the configured length, which the job runners
        reach through QueueLeases (a store without leases gives them none)."""
        self.assertTrue(verifyObject(ILeases, self.a))
        self.assertEqual(self.a.lease, _LEASE)
        leases = QueueLeases.of(self.a, "events")
        assert leases is not None
        self.assertEqual((leases.lease, leases.queue), (_LEASE, "events"))
        self.assertIsNone(QueueLeases.of(MemoryStore(Clock()), "outbound"))

    async def test_runner_leases_reach_the_store(self) -> None:
        """What a runner renews and releases through QueueLeases is the store's: a renewal
        keeps the job from B past the first lease, a release hands it over at once."""
        message = make_message(received_at=_T0)
        await self.a.accept(message)
        (job,) = await self.a.claim(_T0, 10, frozenset())
        leases = QueueLeases.of(self.a, "outbound")
        assert leases is not None
        await leases.renew([job.key], _T0 + 30)
        self.assertEqual(await self.b.claim(_T0 + _LEASE + 1, 10, frozenset()), [])
        await leases.release([job])
        self.assertEqual(len(await self.b.claim(_T0 + _LEASE + 1, 10, frozenset())), 1)

    async def test_dead_node_loses_its_job_after_the_lease(self) -> None:
        """A claims and dies without recording; B's claim gets nothing before the lease
        ends and the job after it; B's result applies once."""
        message = make_message(received_at=_T0)
        await self.a.accept(message)
        (job,) = await self.a.claim(_T0, 10, frozenset())
        await self.a.close()
        self.assertEqual(await self.b.claim(_T0 + _LEASE - 1, 10, frozenset()), [])
        (taken,) = await self.b.claim(_T0 + _LEASE + 1, 10, frozenset())
        self.assertEqual(taken.key, job.key)
        result = JobResult(message.id, _T0 + 62, (RecipientUpdate(0, "sent", "250 ok"),))
        self.assertIsNone(await self.b.record(result))
        self.assertEqual(self.scalar("SELECT count(*) FROM attempts"), 1)
        self.assertEqual(self.scalar("SELECT status FROM recipients"), "sent")

    async def test_late_result_of_a_lost_lease_is_ignored(self) -> None:
        """A's result after B took the job over is not written (no attempt, no DSN) and is
        reported Stale once; B's result applies once."""
        message = make_message(received_at=_T0)
        await self.a.accept(message)
        await self.a.claim(_T0, 10, frozenset())
        await self.b.claim(_T0 + _LEASE + 1, 10, frozenset())
        made: list[object] = []
        bounced = JobResult(message.id, _T0 + 70, (RecipientUpdate(0, "bounced", "550 no"),))
        answer = await self.a.record(bounced, made.append)
        self.assertIsInstance(answer, Stale)
        self.assertEqual(self.stale, [answer])
        self.assertEqual((answer.queue, answer.id), ("outbound", message.id))
        self.assertEqual((self.scalar("SELECT count(*) FROM attempts"), made), (0, []))
        sent = JobResult(message.id, _T0 + 71, (RecipientUpdate(0, "sent", "250 ok"),))
        self.assertIsNone(await self.b.record(sent))
        self.assertEqual(self.scalar("SELECT count(*) FROM attempts"), 1)
        self.assertEqual(self.scalar("SELECT count(*) FROM messages"), 1)  # no DSN

    async def test_renewal_keeps_the_job(self) -> None:
        """A renewal moves the lease's end: B waits a lease from the renewal."""
        message = make_message(received_at=_T0)
        await self.a.accept(message)
        (job,) = await self.a.claim(_T0, 10, frozenset())
        await self.a.renew_leases("outbound", [job.key], _T0 + 50)
        self.assertEqual(await self.b.claim(_T0 + _LEASE + 1, 10, frozenset()), [])
        (taken,) = await self.b.claim(_T0 + 50 + _LEASE + 1, 10, frozenset())
        self.assertEqual(taken.key, job.key)

    async def test_release_frees_the_job_at_once(self) -> None:
        """Released jobs (a graceful stop) are claimable by another node at once."""
        message = make_message(recipients=("a@example.net", "b@other.org"), received_at=_T0)
        await self.a.accept(message)
        jobs = await self.a.claim(_T0, 10, frozenset())
        await self.a.release_leases("outbound", jobs)
        taken = await self.b.claim(_T0 + 1, 10, frozenset())
        self.assertEqual(sorted(j.key for j in taken), sorted(j.key for j in jobs))

    async def test_spooled_webhooks_belong_to_the_spooling_node(self) -> None:
        """Inbound mail's webhook jobs, handed to the spooling node's runner without a
        claim, are held by it from the start: another node waits for the lease."""
        message = make_inbound(received_at=_T0)
        await self.a.accept_inbound(message)
        self.assertEqual(await self.b.claim_webhooks(_T0 + 1, 10, frozenset()), [])
        self.assertEqual(len(await self.b.claim_webhooks(_T0 + _LEASE + 1, 10, frozenset())), 2)
        late = WebhookResult(message.id, "app1", _T0 + 70, "delivered", "HTTP 200")
        self.assertIsInstance(await self.a.record_webhook(late), Stale)
        self.assertIsNone(await self.b.record_webhook(late))
        self.assertEqual(self.scalar("SELECT attempts FROM webhooks WHERE client = 'app1'"), 1)

    async def test_quarantine_under_a_lost_lease(self) -> None:
        """A's quarantine of a job B holds now changes nothing and is not reported as a
        quarantine."""
        message = make_message(received_at=_T0)
        await self.a.accept(message)
        await self.a.claim(_T0, 10, frozenset())
        await self.b.claim(_T0 + _LEASE + 1, 10, frozenset())
        quarantined: list[object] = []
        self.a.observe_quarantined(quarantined.append)
        self.assertFalse(await self.a.quarantine(message.id, "error", "boom", _T0 + 70))
        self.assertEqual((quarantined, len(self.stale)), ([], 1))
        self.assertEqual(self.scalar("SELECT status FROM recipients"), "queued")


class SQLiteFailoverTests(_FailoverContract, TestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp()) / "queue"
        super().setUp()

    def node(self, name: str) -> SQLiteStore:
        store = SQLiteStore.open(
            self.directory,
            reactor,
            max_queued=10_000,
            min_free_bytes=0,
            lease=_LEASE,
            node=name,
        )
        self.addCleanup(store.close)
        store.start()
        return store

    def scalar(self, sql: str) -> Any:
        connection = sqlite3.connect(database_path(self.directory))
        try:
            return connection.execute(sql).fetchone()[0]
        finally:
            connection.close()
