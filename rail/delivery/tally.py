"""A count of things over time, kept for the rates and charts of ``/stats`` and the
console: per second for the last five minutes and per minute for the last day.

Both are rings of buckets: adding costs O(1) (amortised: old buckets are dropped as new
ones start), and memory is bounded by the window whatever the rate (at most 300 seconds
and 1,440 minutes, fewer when quiet). Delivered recipients and accepted messages are each
one tally. Pure: the caller gives the time.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["DAY_MINUTES", "WINDOW", "Tally"]

WINDOW = 300
"""Seconds of per-second counts kept: the longest rate (5 m) asked for."""
DAY_MINUTES = 1440
"""Minutes of per-minute counts kept: the console's 24 h chart."""


class Tally:
    """Counts added at given times; ``total`` is every count since start."""

    def __init__(self) -> None:
        self.total = 0
        self._per_second: deque[list[int]] = deque()  # [second, count]
        self._per_minute: deque[list[int]] = deque()  # [minute, count]

    def add(self, now: float, count: int = 1) -> None:
        """Count ``count`` at ``now``; a time earlier than the newest bucket (a clock
        that stepped back) counts in the newest bucket, so the rings stay ordered."""
        if count <= 0:
            return
        self.total += count
        second = math.floor(now)
        _bump(self._per_second, second, count)
        self._trim(now)
        minute = math.floor(now / 60)
        _bump(self._per_minute, minute, count)
        while self._per_minute and self._per_minute[0][0] <= minute - DAY_MINUTES:
            self._per_minute.popleft()

    def rate(self, now: float, seconds: int) -> float:
        """Counts per minute over the last ``seconds`` (at most :data:`WINDOW`)."""
        self._trim(now)
        since = math.floor(now) - seconds
        total = sum(count for second, count in self._per_second if second > since)
        return total * 60.0 / seconds

    def per_second(self, now: float) -> list[tuple[int, int]]:
        """``(second, count)`` of the last five minutes, oldest first."""
        self._trim(now)
        return [(second, count) for second, count in self._per_second]

    def per_minute(self, now: float) -> list[tuple[int, int]]:
        """``(start of the minute in seconds, count)`` of the last day, oldest first."""
        horizon = math.floor(now / 60) - DAY_MINUTES
        return [(minute * 60, count) for minute, count in self._per_minute if minute > horizon]

    def _trim(self, now: float) -> None:
        horizon = math.floor(now) - WINDOW
        while self._per_second and self._per_second[0][0] <= horizon:
            self._per_second.popleft()


def _bump(ring: deque[list[int]], slot: int, count: int) -> None:
    if ring and ring[-1][0] >= slot:
        ring[-1][1] += count
    else:
        ring.append([slot, count])
