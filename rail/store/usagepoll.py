"""Bringing the other nodes' acceptances into this process's rate limits, about once a second.

With a shared database (PostgreSQL) every node's writer counts its acceptances in
``client_usage`` (:mod:`rail.store.sharedusage`). This service reads the other nodes'
rows on the store's read thread (never the reactor) and hands them to the rate counters:

- at start, the last day's: per client and minute for what is older than the minute
  window (:meth:`seed`), row by row for the last minute or so (``merge_others``), so the
  per-minute window is exact and nothing is counted twice;
- then every :data:`POLL_INTERVAL` seconds, the rows of the buckets from
  :data:`OVERLAP` seconds before the previous poll on: a total that grew adds the
  difference, one unchanged adds nothing. The overlap covers batches that commit a little
  after their messages' ``received_at`` and clocks of nodes that differ by a few seconds.

A poll that fails (the database away) is logged once and tried again at the next tick,
from the same point; reads never overlap. ``polls`` counts the polls merged, ``merged``
the other nodes' messages they added; :meth:`summary` is their ``/stats`` section.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from rail.store.queuestore import QueueStore
from rail.store.sharedusage import bucket_of

__all__ = ["OVERLAP", "POLL_INTERVAL", "SEED_SECONDS", "UsagePoller"]

POLL_INTERVAL = 1.0
"""Seconds between polls: about how late a node sees the others' acceptances."""

OVERLAP = 15.0
"""Each poll reads again the buckets from this many seconds before the previous one."""

SEED_SECONDS = 86400.0
"""How far back the start-up read goes: the longest window, a day."""

_log = Logger()


class _Rates(Protocol):
    def seed(self, rows: Iterable[tuple[str, float, int, int]]) -> None: ...

    def merge_others(
        self, rows: Iterable[tuple[str, float, str, int, int]], since: float
    ) -> int: ...


class UsagePoller(Service):
    """Keeps ``rates`` counting every node's acceptances of ``store`` (a shared one)."""

    def __init__(
        self,
        clock: IReactorTime,
        store: QueueStore,
        rates: _Rates,
        *,
        interval: float = POLL_INTERVAL,
    ) -> None:
        self._clock = clock
        self._store = store
        self._rates = rates
        self._interval = interval
        self._since: float | None = None  # None until the seed is merged
        self._reading = False
        self._failing = False
        self._loop: LoopingCall | None = None
        self.polls = 0
        self.merged = 0
        """Messages of other nodes added to the counters so far."""
        self._last: float | None = None
        self.setName("usage-poll")

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self.poll)
        self._loop.clock = self._clock
        self._loop.start(self._interval, now=True)

    def stopService(self) -> Any:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def poll(self) -> None:
        """Read and merge once, unless a read is in flight."""
        if self._reading:
            return
        self._reading = True
        started = self._clock.seconds()
        since = self._since
        if since is None:
            # The minute window's buckets row by row: from a whole minute at least ago.
            recent = (started // 60.0) * 60.0 - 60.0
            self._store.usage_seed(started - SEED_SECONDS, recent).addCallbacks(
                self._seeded, self._failed, callbackArgs=(started, recent)
            ).addBoth(self._done)
        else:
            self._store.others_usage(since).addCallbacks(
                self._merged, self._failed, callbackArgs=(started, since)
            ).addBoth(self._done)

    def _seeded(self, rows: Any, started: float, recent: float) -> None:
        old, new = rows
        self._rates.seed(old)
        self.merged += sum(row[2] for row in old if row[1] > started - SEED_SECONDS)
        self.merged += self._rates.merge_others(new, recent)
        clients = len({row[0] for row in old} | {row[0] for row in new})
        _log.info(
            "rate limits: counted the other nodes' mail of the last day ({count} clients)",
            count=clients,
        )
        self._next(started)

    def _merged(
        self, rows: list[tuple[str, float, str, int, int]], started: float, since: float
    ) -> None:
        self.merged += self._rates.merge_others(rows, since)
        self._next(started)

    def _next(self, started: float) -> None:
        self._since = bucket_of(started - OVERLAP)
        self.polls += 1
        self._last = self._clock.seconds()
        if self._failing:
            self._failing = False
            _log.info("rate limits: reading the other nodes' counts again")

    def summary(self) -> dict[str, object]:
        """The ``/stats`` section ``shared_rate_limits``: polls merged, the other nodes'
        messages they added, seconds since the last one, and whether reads fail."""
        last = self._last
        return {
            "polls": self.polls,
            "other_nodes_messages": self.merged,
            "seconds_since_poll": None if last is None else round(self._clock.seconds() - last, 3),
            "failing": self._failing,
        }

    def _failed(self, failure: Any) -> None:
        if not self._failing:
            self._failing = True
            _log.error(
                "rate limits: cannot read the other nodes' counts ({error});"
                " counting this node's alone until it can",
                error=failure.getErrorMessage(),
            )

    def _done(self, _: object) -> None:
        self._reading = False
