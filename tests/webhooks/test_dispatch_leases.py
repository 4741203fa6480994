"""The webhook and event dispatchers on a store that keeps leases (a shared PostgreSQL
queue): each one's runner renews and releases under its own queue."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from rail.store.model import ILeases, JobQueue
from rail.testing import MemoryStore
from rail.webhooks.dispatcher import WebhookLimits
from tests.webhooks import test_dispatcher


@implementer(ILeases)
class _LeasingStore(MemoryStore):
    """MemoryStore that says it keeps 60-second leases and records what it is asked."""

    lease = 60.0

    def __init__(self, clock: Any) -> None:
        super().__init__(clock)
        self.renewed: list[tuple[JobQueue, list[Any]]] = []
        self.released: list[tuple[JobQueue, int]] = []

    def renew_leases(self, queue: JobQueue, keys: Any, now: float) -> Deferred[None]:
        self.renewed.append((queue, sorted(keys)))
        return succeed(None)

    def release_leases(self, queue: JobQueue, jobs: Any) -> Deferred[None]:
        self.released.append((queue, len(jobs)))
        return succeed(None)

    def observe_stale(self, callback: Any) -> None:
        pass


class DispatcherLeaseTests(test_dispatcher.DispatcherTests):
    """The dispatcher's own tests pass on a store with leases; and this."""

    def setUp(self) -> None:
        super().setUp()
        self.store = _LeasingStore(self.clock)

    def test_webhooks_renewed_and_released_as_inbound(self) -> None:
        """A POST waiting on its app is renewed under the ``inbound`` queue every 20 s; the
        job offered beyond the backlog is released at once, the cut one at the end of the
        grace period."""
        dispatcher = self.dispatcher(WebhookLimits(per_url=1, concurrency=1, backlog=1))
        (first, _) = self.spool(2, "https://a.example/h")
        self.assertEqual(self.store.released, [("inbound", 1)])
        self.clock.advance(20)
        self.assertEqual(self.store.renewed, [("inbound", [(first, "myapp")])])
        self.stop(dispatcher, grace=1)
        self.assertEqual(self.store.released, [("inbound", 1), ("inbound", 1)])
