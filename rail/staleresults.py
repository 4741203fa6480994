"""Counting and logging results that were not written because their job changed hands.

When several nodes share one queue, a node that held a job too long without renewing its
lease (a stalled process, a lost database connection) may find that another node took the
job and ran it again (:mod:`rail.store.lease`). Its own result is then not written, so the
job is never applied twice: the store reports each such result once
(:class:`rail.store.model.Stale`), logged here as a warning naming the job and counted in
``rail_stale_results_total{queue}``. A few around a node's failure are expected; a steady
rate says leases are too short for the work (``storage.lease``) or a node keeps stalling.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from twisted.logger import Logger

from rail.store.model import Stale

__all__ = ["StaleResults"]

_log = Logger()


class StaleResults:
    """Observer of the store's stale results (``store.observe_stale(stale)``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._counter = Counter(
            "rail_stale_results",
            "Results (and quarantines) not written because another node had taken the job"
            " after this node's lease ended, by queue: outbound, inbound (webhooks), events.",
            ["queue"],
            registry=self.registry,
        )
        for queue in ("outbound", "inbound", "events"):
            self._counter.labels(queue=queue)
        self.counts: dict[str, int] = {}

    def __call__(self, stale: Stale) -> None:
        self.counts[stale.queue] = self.counts.get(stale.queue, 0) + 1
        self._counter.labels(queue=stale.queue).inc()
        _log.warn(
            "result for {queue} job {msg_id} not recorded: another node took the job after"
            " this node's lease ended ({reason})",
            queue=stale.queue,
            msg_id=stale.id,
            reason=stale.reason,
        )
