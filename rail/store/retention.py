"""Retention's pace: purge steps on a clock, small and spaced, never a long pause.

Every ``interval`` seconds (and once at start) the service asks the store for a purge step
(:class:`rail.store.model.IRetention`) with the horizons of ``storage.retention``; while a
step reports more work, the next follows after ``pause`` seconds, so a backlog (the first
start after an upgrade, a long stop) drains in small steps between which acceptances and
deliveries have the writer. Each run that purged something logs one line with its totals.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.store.model import IRetention, Purged

__all__ = ["RetentionService"]

_log = Logger()


class RetentionService(Service):
    """Drives ``store``'s purge steps with ``clock``."""

    def __init__(
        self,
        clock: IReactorTime,
        store: IRetention,
        *,
        body: float,
        record: float,
        interval: float = 60.0,
        pause: float = 0.05,
        limit: int = 200,
    ) -> None:
        """``body``, ``record``: the horizons of ``storage.retention``, in seconds after a
        message finished; ``limit``: messages (and idempotency keys) per step; ``pause``:
        seconds between the steps of one run; ``interval``: seconds between runs."""
        self._clock = clock
        self._store = store
        self._body = body
        self._record = record
        self._interval = interval
        self._pause = pause
        self._limit = limit
        self._call: IDelayedCall | None = None
        self._totals = Purged()
        self.setName("retention")

    def startService(self) -> None:
        super().startService()
        self._schedule(0.0)

    def stopService(self) -> Any:
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        return None

    def _schedule(self, delay: float) -> None:
        if self.running:
            self._call = self._clock.callLater(delay, self._step)

    def _step(self) -> None:
        self._call = None
        now = self._clock.seconds()
        step = self._store.purge(now, now - self._body, now - self._record, self._limit)
        step.addCallbacks(self._done, self._failed)

    def _done(self, purged: Purged) -> None:
        totals = self._totals = Purged(
            bodies=self._totals.bodies + purged.bodies,
            records=self._totals.records + purged.records,
            keys=self._totals.keys + purged.keys,
            pages=self._totals.pages + purged.pages,
            events=self._totals.events + purged.events,
        )
        if purged.more:
            self._schedule(self._pause)
            return
        if totals != Purged():
            _log.info(
                "retention: dropped {bodies} message bodies, deleted {records} message records,"
                " {keys} idempotency keys and {events} events, gave back {pages} pages",
                bodies=totals.bodies,
                records=totals.records,
                keys=totals.keys,
                events=totals.events,
                pages=totals.pages,
            )
        self._totals = Purged()
        self._schedule(self._interval)

    def _failed(self, failure: Failure) -> None:
        _log.warn(
            "retention step failed, retried in {interval} s: {error}",
            interval=self._interval,
            error=str(failure.value),
        )
        self._schedule(self._interval)
