"""Inbound webhook figures for ``/stats`` and ``/metrics``, fed by the webhook dispatcher.

``rail_webhooks_total{status}`` counts the outcome of every recorded POST of inbound mail
(``delivered``, ``deferred``, ``failed``), and ``rail_queue_webhooks{status}`` the webhook
jobs in the store by status, so an operator sees a backlog grow (an app that is down) and
how mail reaches the apps, as for outbound delivery and events. ``/stats`` shows the same
(:mod:`rail.webhooks.poststats`), with the time from Rail accepting the mail to the
application's 2xx.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from rail.inbound.model import WebhookJob, WebhookResult
from rail.webhooks.poststats import RESULTS, PostStats

__all__ = ["WebhookStats"]


class WebhookStats(PostStats):
    """Counts and latencies of inbound webhook POSTs (the webhook dispatcher's observer)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(
            registry,
            jobs_metric="rail_queue_webhooks",
            jobs_help="Inbound webhook jobs in the queue by status.",
            latency="received_to_delivered_seconds",
        )
        total = Counter(
            "rail_webhooks",
            "Inbound webhook POSTs by outcome (delivered, deferred, failed).",
            ["status"],
            registry=registry,
        )
        self._counters = {status: total.labels(status=status) for status in RESULTS}

    def attempt(self, job: WebhookJob, result: WebhookResult, seconds: float) -> None:
        """Count one recorded POST."""
        self._counters[result.status].inc()
        self._counted(result.status, result.attempted_at - job.received_at)
