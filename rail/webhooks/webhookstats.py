"""Inbound webhook figures for ``/stats`` and ``/metrics``, fed by the webhook dispatcher.

``rail_webhooks_total{status}`` counts the outcome of every recorded POST of inbound mail
(``delivered``, ``deferred``, ``failed``), and ``rail_queue_webhooks{status}`` the webhook
jobs in the store by status (read at request time, :meth:`WebhookStats.set_jobs`), so an
operator sees a backlog grow (an app that is down) and how mail reaches the apps, as for
outbound delivery and events. ``/stats`` shows the same: jobs by status, totals since
start and the percentiles of the time from Rail accepting the mail to the application's
2xx, over the last :data:`LATENCY_SAMPLES` delivered POSTs. Pure: times come from the
results.
"""

from __future__ import annotations

from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge

from rail.delivery.stats import percentile
from rail.inbound.model import WebhookJob, WebhookResult

__all__ = ["LATENCY_SAMPLES", "WebhookStats"]

LATENCY_SAMPLES = 10_000
_RESULTS = ("delivered", "deferred", "failed")


class WebhookStats:
    """Counts and latencies of inbound webhook POSTs (the webhook dispatcher's observer)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.results = dict.fromkeys(_RESULTS, 0)
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        total = Counter(
            "rail_webhooks",
            "Inbound webhook POSTs by outcome (delivered, deferred, failed).",
            ["status"],
            registry=registry,
        )
        self._counters = {status: total.labels(status=status) for status in _RESULTS}
        self.jobs = dict.fromkeys(("queued", "deferred", "delivered", "failed"), 0)
        self._jobs = Gauge(
            "rail_queue_webhooks",
            "Inbound webhook jobs in the queue by status.",
            ["status"],
            registry=registry,
        )

    def attempt(self, job: WebhookJob, result: WebhookResult, seconds: float) -> None:
        """Count one recorded POST."""
        self.results[result.status] += 1
        self._counters[result.status].inc()
        if result.status == "delivered":
            self._latencies.append(max(0.0, result.attempted_at - job.received_at))

    def set_jobs(self, counts: dict[str, int]) -> None:
        """Publish the webhook jobs in the store by status."""
        for status in self.jobs:
            self.jobs[status] = counts.get(status, 0)
            self._jobs.labels(status=status).set(self.jobs[status])

    def summary(self) -> dict[str, object]:
        """The ``webhooks`` section of ``/stats``."""
        ordered = sorted(self._latencies)
        return {
            "jobs": dict(self.jobs),
            "results_since_start": dict(self.results),
            "received_to_delivered_seconds": {
                "samples": len(ordered),
                "p50": percentile(ordered, 0.50),
                "p99": percentile(ordered, 0.99),
            },
        }
