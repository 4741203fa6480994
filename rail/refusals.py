"""Counting and logging what Rail refuses to hold: connections, sessions, requests, bytes.

Every bound (connection caps, deadlines, memory budgets) ends in a refusal that an
operator must be able to see, but a flood of refusals must not become a flood of log
lines: the log would then be the next thing an attacker fills. So each refusal is counted
in ``rail_refusals_total{listener, reason}`` at once, while the log gets at most one line
per (listener, reason) every ``interval`` seconds, saying how many were folded into it.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry, Counter
from twisted.logger import Logger

__all__ = ["Refusals"]

_log = Logger()


class _Clock(Protocol):
    def seconds(self) -> float: ...


class Refusals:
    """One per process; every listener and protocol reports through it."""

    def __init__(
        self, clock: _Clock, registry: CollectorRegistry | None = None, interval: float = 10.0
    ) -> None:
        self._clock = clock
        self._interval = interval
        self.registry = registry or CollectorRegistry()
        self._counter = Counter(
            "rail_refusals",
            "Connections, commands and requests refused by a bound, by listener and reason.",
            ["listener", "reason"],
            registry=self.registry,
        )
        # (listener, reason) -> [time of the last line, refusals since it]
        self._logged: dict[tuple[str, str], list[float]] = {}
        self.counts: dict[tuple[str, str], int] = {}

    def refuse(self, listener: str, reason: str, peer: str = "") -> None:
        """Count one refusal; log it unless a line for the same pair went out recently."""
        key = (listener, reason)
        self.counts[key] = self.counts.get(key, 0) + 1
        self._counter.labels(listener=listener, reason=reason).inc()
        now = self._clock.seconds()
        last = self._logged.get(key)
        if last is not None and now - last[0] < self._interval:
            last[1] += 1
            return
        folded = int(last[1]) if last is not None else 0
        self._logged[key] = [now, 0]
        _log.info(
            "refused listener={listener} reason={reason} peer={peer} folded={folded}",
            listener=listener,
            reason=reason,
            peer=peer,
            folded=folded,
        )
