"""What the figures of signed POSTs share, inbound webhooks' and events' alike: the jobs in
the store by status (a ``rail_queue_*`` gauge, read when ``/stats`` or ``/metrics`` is
asked), the outcomes since start, and the percentiles of the time from the job's start
(the mail accepted, the event recorded) to the application's 2xx over the last
:data:`rail.delivery.stats.LATENCY_SAMPLES` delivered POSTs. Pure: times come from the
results."""

from __future__ import annotations

from collections import deque

from prometheus_client import CollectorRegistry, Gauge

from rail.delivery.stats import LATENCY_SAMPLES, percentile

__all__ = ["RESULTS", "PostStats"]

RESULTS = ("delivered", "deferred", "failed")
"""A recorded POST's outcomes."""


class PostStats:
    """Jobs by status, outcomes and latencies; a subclass counts its own POSTs in
    ``/metrics`` and calls :meth:`_counted` for each."""

    def __init__(
        self, registry: CollectorRegistry, *, jobs_metric: str, jobs_help: str, latency: str
    ) -> None:
        """``jobs_metric``: the gauge of jobs by status; ``latency``: the name of the
        latency figures in the ``/stats`` section."""
        self.results = dict.fromkeys(RESULTS, 0)
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._latency = latency
        self.jobs = dict.fromkeys(("queued", "deferred", "delivered", "failed"), 0)
        self._jobs = Gauge(jobs_metric, jobs_help, ["status"], registry=registry)

    def _counted(self, status: str, seconds: float) -> None:
        """One recorded POST of ``status``, ``seconds`` after its job started."""
        self.results[status] += 1
        if status == "delivered":
            self._latencies.append(max(0.0, seconds))

    def set_jobs(self, counts: dict[str, int]) -> None:
        """Publish the jobs in the store by status."""
        for status in self.jobs:
            self.jobs[status] = counts.get(status, 0)
            self._jobs.labels(status=status).set(self.jobs[status])

    def summary(self) -> dict[str, object]:
        """This kind's section of ``/stats``."""
        ordered = sorted(self._latencies)
        return {
            "jobs": dict(self.jobs),
            "results_since_start": dict(self.results),
            self._latency: {
                "samples": len(ordered),
                "p50": percentile(ordered, 0.50),
                "p99": percentile(ordered, 0.99),
            },
        }
