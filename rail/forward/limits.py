"""Per-route rate limits on forwarding: messages per minute and per hour.

Pure, in memory, with times passed in. Fixed windows (the current minute and the current
hour since the epoch): two counters per route, constant work per message, whatever the
traffic. A limit is checked at RCPT (:meth:`ForwardLimits.allows`) and a message counts
once it is accepted (:meth:`ForwardLimits.count`); counts start again at a restart,
which at worst lets one more window's worth through.
"""

from __future__ import annotations

import attrs

from rail.config.schema import InboundRoute

__all__ = ["ForwardLimits"]


@attrs.define
class _Window:
    start: int = -1
    count: int = 0

    def current(self, start: int) -> int:
        if start != self.start:
            self.start, self.count = start, 0
        return self.count


class ForwardLimits:
    """Counts forwarded messages per route, keyed by the route's index and match (a
    reloaded configuration whose routes moved starts their counts again)."""

    def __init__(self) -> None:
        self._minutes: dict[tuple[int, str], _Window] = {}
        self._hours: dict[tuple[int, str], _Window] = {}

    def allows(self, index: int, route: InboundRoute, now: float) -> bool:
        """Whether one more message may be forwarded by ``route`` at ``now``."""
        key = (index, route.match)
        minute, hour = int(now // 60), int(now // 3600)
        if route.forward_per_minute is not None:
            used = self._minutes.setdefault(key, _Window()).current(minute)
            if used >= route.forward_per_minute:
                return False
        if route.forward_per_hour is not None:
            used = self._hours.setdefault(key, _Window()).current(hour)
            if used >= route.forward_per_hour:
                return False
        return True

    def count(self, index: int, route: InboundRoute, now: float) -> None:
        """One message was forwarded by ``route`` at ``now``."""
        key = (index, route.match)
        if route.forward_per_minute is not None:
            window = self._minutes.setdefault(key, _Window())
            window.current(int(now // 60))
            window.count += 1
        if route.forward_per_hour is not None:
            window = self._hours.setdefault(key, _Window())
            window.current(int(now // 3600))
            window.count += 1
