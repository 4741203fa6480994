"""Event delivery figures for ``/stats`` and ``/metrics``, fed by the event dispatcher.

``rail_events_total{type, status}`` counts the outcome of every POST of an event
(``delivered``, ``deferred``, ``failed``) by event type, and ``rail_queue_events{status}``
the event jobs in the store by status; ``/stats`` shows the same
(:mod:`rail.webhooks.poststats`), with the time from an event being recorded to the
application's 2xx.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from rail.events.jobs import EventJob, EventResult
from rail.events.model import EVENT_TYPES
from rail.webhooks.poststats import RESULTS, PostStats

__all__ = ["EventStats"]


class EventStats(PostStats):
    """Counts and latencies of event POSTs (the event dispatcher's observer)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(
            registry,
            jobs_metric="rail_queue_events",
            jobs_help="Event jobs in the queue by status.",
            latency="recorded_to_delivered_seconds",
        )
        total = Counter(
            "rail_events",
            "Event webhook POSTs by event type and outcome (delivered, deferred, failed).",
            ["type", "status"],
            registry=registry,
        )
        self._counters = {
            (kind, status): total.labels(type=kind, status=status)
            for kind in EVENT_TYPES
            for status in RESULTS
        }

    def attempt(self, job: EventJob, result: EventResult, seconds: float) -> None:
        """Count one decided POST."""
        counter = self._counters.get((job.type, result.status))
        if counter is not None:
            counter.inc()
        self._counted(result.status, result.attempted_at - job.created_at)
