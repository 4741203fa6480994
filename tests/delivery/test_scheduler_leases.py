"""The delivery scheduler on a store that keeps leases (a shared PostgreSQL queue): its
runner renews the jobs in flight through the store and releases what it leaves."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import capturedLogs, formatEvent
from zope.interface import implementer

from rail.store.model import ILeases, JobQueue, Stale
from rail.testing import MemoryStore
from tests.delivery import test_scheduler


@implementer(ILeases)
class _LeasingStore(MemoryStore):
    """MemoryStore that says it keeps 60-second leases and records what it is asked."""

    lease = 60.0

    def __init__(self, clock: Any) -> None:
        super().__init__(clock)
        self.renewed: list[tuple[JobQueue, list[Any], float]] = []
        self.released: list[tuple[JobQueue, list[str]]] = []

    def renew_leases(self, queue: JobQueue, keys: Any, now: float) -> Deferred[None]:
        self.renewed.append((queue, sorted(keys), now))
        return succeed(None)

    def release_leases(self, queue: JobQueue, jobs: Any) -> Deferred[None]:
        self.released.append((queue, sorted(job.message_id for job in jobs)))
        return succeed(None)

    def observe_stale(self, callback: Any) -> None:
        pass


class SchedulerLeaseTests(test_scheduler.SchedulerTests):
    """The scheduler's own tests pass on a store with leases; and these."""

    def setUp(self) -> None:
        super().setUp()
        self.store = _LeasingStore(self.clock)

    def test_renews_running_deliveries_and_releases_at_stop(self) -> None:
        """A delivery waiting on its MX is renewed every 20 s (a third of the lease) under
        the outbound queue; stopping releases the job that never started at once and the
        cut one when the grace period ends."""
        self.limits = self.limits.__class__(concurrency=1, per_destination=1)
        self.answer = lambda message: None  # the MX never answers
        first = self.accept("a@one.example")
        second = self.accept("b@one.example")
        scheduler = self.scheduler()
        scheduler.start()
        self.clock.advance(20)
        self.assertEqual(
            self.store.renewed,
            [("outbound", [(first, "one.example"), (second, "one.example")], self.clock.seconds())],
        )
        stopped = scheduler.stop(5)
        self.assertEqual(self.store.released, [("outbound", [second])])
        self.clock.advance(5)
        self.successResultOf(stopped)
        self.assertEqual(self.store.released, [("outbound", [second]), ("outbound", [first])])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stale_result_is_not_logged_final(self) -> None:
        """A result the store answers Stale leaves the job without a final line and
        without a second attempt."""
        self.store.record = lambda result, dsn=None: succeed(  # type: ignore[method-assign]
            Stale("outbound", result.message_id, "taken over")
        )
        self.accept("a@one.example")
        scheduler = self.scheduler()
        with capturedLogs() as events:
            scheduler.start()
            self.assertEqual(scheduler.in_flight, 0)
            self.clock.advance(120)
        self.assertEqual(len(self.sessions[0].sent), 1)
        self.assertEqual([e for e in events if "delivery.final" in formatEvent(e)], [])
        self.assertTrue(any("delivery.attempt" in formatEvent(e) for e in events))
        self.successResultOf(scheduler.stop(0))
