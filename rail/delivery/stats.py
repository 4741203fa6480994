"""Delivery figures for ``/stats`` and ``/metrics``, fed by the scheduler's observer calls
and, for accepted messages, by the accept paths (SMTP submission, the send API and its
batches) once the store has answered.

Kept in memory, bounded: sent recipients and accepted messages each as a
:class:`~rail.delivery.tally.Tally` (per second for the last five minutes: the 1 m and
5 m rates; per minute for the last day: the console's charts) and the accept-to-sent
latencies of the last :data:`LATENCY_SAMPLES` sent recipients (the percentiles).
Prometheus series live in their own registry, so tests and several services in one
process never collide. Pure: times come from the results and the caller.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from rail.delivery.tally import WINDOW, Tally
from rail.store.model import DeliveryJob, JobResult

__all__ = ["LATENCY_SAMPLES", "DeliveryStats", "percentile"]

LATENCY_SAMPLES = 10_000
_STATUSES = ("queued", "deferred", "sent", "bounced", "failed", "deleted")


def percentile(ordered: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of already sorted values (None when there are none)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class DeliveryStats:
    """Counts, rates and latencies of outbound delivery since ``started_at``."""

    def __init__(self, started_at: float, registry: CollectorRegistry | None = None) -> None:
        self.started_at = started_at
        self.registry = registry or CollectorRegistry()
        self.results = dict.fromkeys(("sent", "deferred", "bounced"), 0)
        self._sent = Tally()  # recipients
        self._accepted = Tally()  # messages
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._sections: dict[str, Callable[[], object]] = {}
        self.refreshers: list[Callable[[], object]] = []
        """Called before each ``/stats`` and ``/metrics`` answer (see :meth:`add_refresh`)."""
        self._added = 0  # latencies appended since start
        # (latencies appended, when computed, the figures): sorting 10,000 samples takes
        # about a millisecond of the reactor, so /stats recomputes at most once a second.
        self._figures: tuple[int, float, dict[str, object]] | None = None
        self._results = Counter(
            "rail_delivery_results",
            "Recipients by the outcome of a delivery attempt.",
            ["result"],
            registry=self.registry,
        )
        self._attempt_seconds = Histogram(
            "rail_delivery_attempt_seconds",
            "Duration of one SMTP transaction (or failed routing/connection) per job.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self._connections = Counter(
            "rail_outbound_connections",
            "Outbound SMTP connections by whether STARTTLS was in use.",
            ["tls"],
            registry=self.registry,
        )
        self._queue = Gauge(
            "rail_queue_recipients",
            "Recipients in the queue by status.",
            ["status"],
            registry=self.registry,
        )
        for result in self.results:
            self._results.labels(result=result)
        for tls in ("yes", "no"):
            self._connections.labels(tls=tls)

    def attempt(self, job: DeliveryJob, result: JobResult, seconds: float) -> None:
        """Count one recorded attempt (scheduler observer)."""
        self._attempt_seconds.observe(max(0.0, seconds))
        now = result.attempted_at
        sent = 0
        for update in result.updates:
            self.results[update.status] += 1
            self._results.labels(result=update.status).inc()
            if update.status == "sent":
                sent += 1
                self._latencies.append(max(0.0, now - job.received_at))
                self._added += 1
        self._sent.add(now, sent)

    def accepted(self, now: float, messages: int = 1) -> None:
        """Count messages the store accepted at ``now`` (called by SMTP submission, the
        send API and its batches once the store answered; O(1), no store read)."""
        self._accepted.add(now, messages)

    def connection(self, domain: str, tls: bool) -> None:
        """Count one outbound connection (scheduler observer)."""
        self._connections.labels(tls="yes" if tls else "no").inc()

    def set_queue(self, counts: dict[str, int]) -> None:
        """Publish the queue depth by status (read from the store at scrape time)."""
        for status in _STATUSES:
            self._queue.labels(status=status).set(counts.get(status, 0))

    def add_section(self, name: str, read: Callable[[], object]) -> None:
        """Show ``read()`` as ``name`` in every ``/stats`` document (the reactor lag's
        figures come this way); ``read`` must be cheap, it runs on each request."""
        self._sections[name] = read

    def add_refresh(self, refresh: Callable[[], object]) -> None:
        """Call ``refresh()`` before each ``/stats`` and ``/metrics`` answer, which waits
        for the Deferred it may return: figures read from the store at request time
        (event jobs by status) are published that way."""
        self.refreshers.append(refresh)

    def rate(self, now: float, seconds: int) -> float:
        """Recipients sent per minute over the last ``seconds``."""
        return self._sent.rate(now, seconds)

    def recent_sent(self, now: float) -> list[tuple[int, int]]:
        """``(second, recipients sent)`` of the last five minutes, oldest first (the
        console's chart; at most 300 pairs)."""
        return self._sent.per_second(now)

    def sent_per_minute(self, now: float) -> list[tuple[int, int]]:
        """``(start of the minute in seconds, recipients sent)`` of the last day, oldest
        first (the console's 1 h and 24 h charts; at most 1,440 pairs)."""
        return self._sent.per_minute(now)

    def accepted_per_minute(self, now: float) -> list[tuple[int, int]]:
        """``(start of the minute in seconds, messages accepted)`` of the last day,
        oldest first (the console's 1 h and 24 h charts; at most 1,440 pairs)."""
        return self._accepted.per_minute(now)

    def snapshot(self, now: float, counts: dict[str, int]) -> dict[str, object]:
        """The ``/stats`` document."""
        return {
            "uptime_seconds": round(now - self.started_at, 3),
            "recipients": {status: counts.get(status, 0) for status in _STATUSES},
            "delivered_per_minute": {
                "1m": round(self.rate(now, 60), 2),
                "5m": round(self.rate(now, WINDOW), 2),
            },
            "accepted_per_minute": {
                "1m": round(self._accepted.rate(now, 60), 2),
                "5m": round(self._accepted.rate(now, WINDOW), 2),
            },
            "accepted_since_start": self._accepted.total,
            "results_since_start": dict(self.results),
            "accept_to_sent_seconds": self._latency_figures(now),
            **{name: read() for name, read in self._sections.items()},
        }

    def _latency_figures(self, now: float) -> dict[str, object]:
        """The latency percentiles, recomputed when samples were added since, at most
        once a second."""
        cached = self._figures
        if cached is not None:
            added, computed_at, figures = cached
            if added == self._added or 0 <= now - computed_at < 1.0:
                return figures
        ordered = sorted(self._latencies)
        figures = {
            "samples": len(ordered),
            "p50": percentile(ordered, 0.50),
            "p95": percentile(ordered, 0.95),
            "p99": percentile(ordered, 0.99),
        }
        self._figures = (self._added, now, figures)
        return figures
