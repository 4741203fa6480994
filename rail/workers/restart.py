"""What the parent does when a worker process ends: nothing (it was told to stop),
restart it after a delay that grows while it keeps dying, or give up at start-up.
Pure decisions over plain values; times are seconds from the caller's clock.
"""

from __future__ import annotations

import attrs

__all__ = ["Backoff", "GiveUp", "Restart", "exit_decision"]


@attrs.frozen
class Backoff:
    """Delays between restarts of a worker that keeps dying."""

    first: float = 1.0
    """Delay before restarting a worker that died after running well."""
    cap: float = 60.0
    """The delay doubles with each death in a row, up to this, so a crash loop costs
    one start a minute, not a busy core."""
    stable: float = 60.0
    """A worker that ran this long before dying starts a new count: its death is not
    part of a crash loop."""

    def delay(self, deaths: int) -> float:
        """Seconds to wait after the ``deaths``-th death in a row (from 1)."""
        return float(min(self.cap, self.first * 2 ** max(0, deaths - 1)))


@attrs.frozen
class Restart:
    """Start the worker again after ``delay`` seconds; ``deaths`` in a row so far."""

    delay: float
    deaths: int


@attrs.frozen
class GiveUp:
    """Stop every worker and exit with ``code``: a worker failed before Rail was ever
    ready (a bad certificate, an unreachable database), which a restart would repeat."""

    code: int


def exit_decision(
    *,
    stopping: bool,
    started: bool,
    deaths: int,
    ran_for: float,
    exit_code: int | None,
    backoff: Backoff,
) -> Restart | GiveUp | None:
    """What to do when a worker ends.

    ``stopping``: the parent is stopping (the end was asked for); ``started``: every
    worker has been ready at least once since the parent started; ``deaths``: this
    worker's deaths in a row before this one; ``ran_for``: seconds it ran;
    ``exit_code``: its exit status (None when a signal ended it).
    """
    if stopping:
        return None
    if not started:
        return GiveUp(code=exit_code if exit_code else 1)
    count = 1 if ran_for >= backoff.stable else deaths + 1
    return Restart(delay=backoff.delay(count), deaths=count)
