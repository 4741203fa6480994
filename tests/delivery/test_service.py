"""The delivery service starts and stops the MTA-STS policy store with the scheduler."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.service import DeliveryService


class _Scheduler:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.stopped: Deferred[None] = Deferred()

    def start(self) -> None:
        self.calls.append("scheduler start")

    def stop(self, grace: float) -> Deferred[None]:
        self.calls.append(f"scheduler stop {grace:g}")
        return self.stopped


class _Policies:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def start(self) -> Deferred[None]:
        self.calls.append("policies start")
        return succeed(None)

    def stop(self) -> Deferred[None]:
        self.calls.append("policies stop")
        return succeed(None)


class DeliveryServiceTests(SynchronousTestCase):
    def test_policies_follow_the_scheduler(self) -> None:
        """The policy cache is read before the scheduler starts, and written once the
        scheduler has stopped (its last deliveries may have fetched policies)."""
        scheduler = _Scheduler()
        policies: Any = _Policies(scheduler.calls)
        service = DeliveryService(scheduler, 5.0, policies=policies)  # type: ignore[arg-type]
        service.startService()
        stopping = service.stopService()
        self.assertEqual(scheduler.calls, ["policies start", "scheduler start", "scheduler stop 5"])
        self.assertNoResult(stopping)
        scheduler.stopped.callback(None)
        self.successResultOf(stopping)
        self.assertEqual(scheduler.calls[-1], "policies stop")
