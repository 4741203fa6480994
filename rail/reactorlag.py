"""How late the reactor runs what it has scheduled: ``rail_reactor_lag_seconds``.

Everything Rail does for a connection, a timer or a thread's result runs on the one reactor
thread, so a call that holds it (file work, a scan, a big sort) delays every other
connection by as long. :class:`ReactorLag` measures that directly: every ``interval``
(100 ms) it sets a timer, and when the timer fires, how long after its due time it ran is
the lag. Each lag is observed into a Prometheus histogram (``/metrics``) and kept for the
last minute of probes, whose 99th percentile and maximum ``/stats`` shows.

A probe costs one timer call per interval whatever the load, and the window is a fixed
number of samples, so reading it costs the same at any store size.
"""

from __future__ import annotations

from collections import deque

from prometheus_client import CollectorRegistry, Histogram
from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from rail.delivery.stats import percentile

__all__ = ["BUCKETS", "DEFAULT_INTERVAL", "WINDOW", "ReactorLag"]

DEFAULT_INTERVAL = 0.1
"""Seconds between probes."""

WINDOW = 600
"""Probes kept for ``/stats`` (a minute at the default interval)."""

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Histogram bounds in seconds: from 1 ms (a healthy reactor) to 1 s and above."""


class ReactorLag(Service):
    """The ``reactor-lag`` service: probes the reactor while it runs."""

    name = "reactor-lag"

    def __init__(
        self,
        clock: IReactorTime,
        registry: CollectorRegistry,
        interval: float = DEFAULT_INTERVAL,
        window: int = WINDOW,
    ) -> None:
        self._clock = clock
        self._interval = interval
        self._histogram = Histogram(
            "rail_reactor_lag_seconds",
            "How late the reactor ran a timer due every 100 ms: the time other work held it.",
            buckets=BUCKETS,
            registry=registry,
        )
        self._recent: deque[float] = deque(maxlen=window)
        self._timer: IDelayedCall | None = None
        self._due = 0.0

    # Service's own start/stop only flip ``running``; set here directly because they are
    # untyped (mypy --strict).
    def startService(self) -> None:
        self.running = True
        self._schedule()

    def stopService(self) -> None:
        self.running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def summary(self) -> dict[str, object]:
        """The ``/stats`` section: probes in the window, their p99 and maximum (seconds)."""
        ordered = sorted(self._recent)
        return {
            "samples": len(ordered),
            "p99": percentile(ordered, 0.99),
            "max": ordered[-1] if ordered else None,
        }

    def _schedule(self) -> None:
        self._due = self._clock.seconds() + self._interval
        self._timer = self._clock.callLater(self._interval, self._fired)

    def _fired(self) -> None:
        # A clock stepped backwards would give a negative lag: no lag.
        lag = max(0.0, self._clock.seconds() - self._due)
        self._histogram.observe(lag)
        self._recent.append(lag)
        self._schedule()
