"""Event delivery figures for ``/stats`` and ``/metrics``, fed by the event dispatcher.

``rail_events_total{type, status}`` counts the outcome of every POST of an event
(``delivered``, ``deferred``, ``failed``) by event type, and ``rail_queue_events{status}``
the event jobs in the store by status (read at request time, :meth:`EventStats.set_jobs`);
``/stats`` shows the same: jobs by status, totals since start and the percentiles of the
time from an event being recorded to the application's 2xx, over the last
:data:`LATENCY_SAMPLES` delivered events. Pure: times come from the results.
"""

from __future__ import annotations

from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge

from rail.delivery.stats import percentile
from rail.events.jobs import EventJob, EventResult
from rail.events.model import EVENT_TYPES

__all__ = ["LATENCY_SAMPLES", "EventStats"]

LATENCY_SAMPLES = 10_000
_RESULTS = ("delivered", "deferred", "failed")


class EventStats:
    """Counts and latencies of event POSTs (the event dispatcher's observer)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.results = dict.fromkeys(_RESULTS, 0)
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._total = Counter(
            "rail_events",
            "Event webhook POSTs by event type and outcome (delivered, deferred, failed).",
            ["type", "status"],
            registry=registry,
        )
        self.jobs = dict.fromkeys(("queued", "deferred", "delivered", "failed"), 0)
        self._jobs = Gauge(
            "rail_queue_events",
            "Event jobs in the queue by status.",
            ["status"],
            registry=registry,
        )
        self._counters = {
            (kind, status): self._total.labels(type=kind, status=status)
            for kind in EVENT_TYPES
            for status in _RESULTS
        }

    def attempt(self, job: EventJob, result: EventResult, seconds: float) -> None:
        """Count one decided POST."""
        self.results[result.status] += 1
        counter = self._counters.get((job.type, result.status))
        if counter is not None:
            counter.inc()
        if result.status == "delivered":
            self._latencies.append(max(0.0, result.attempted_at - job.created_at))

    def set_jobs(self, counts: dict[str, int]) -> None:
        """Publish the event jobs in the store by status."""
        for status in self.jobs:
            self.jobs[status] = counts.get(status, 0)
            self._jobs.labels(status=status).set(self.jobs[status])

    def summary(self) -> dict[str, object]:
        """The ``events`` section of ``/stats``."""
        ordered = sorted(self._latencies)
        return {
            "jobs": dict(self.jobs),
            "results_since_start": dict(self.results),
            "recorded_to_delivered_seconds": {
                "samples": len(ordered),
                "p50": percentile(ordered, 0.50),
                "p99": percentile(ordered, 0.99),
            },
        }
