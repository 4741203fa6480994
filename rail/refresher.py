"""One job run now and then off the reactor: every ``interval`` seconds and on demand.

Several parts of a running Rail follow files that other processes change (the CRL that
``rail certs revoke`` rewrites, the certificate registry that ``rail certs issue`` writes):
each reads in a worker thread and installs the result on the reactor thread. What they
share is the timing, kept here once: never two runs at once; a :meth:`Refresher.refresh`
that arrives while a run is under way gets one more run after it (the running one may
have started before the change the caller knows of); :meth:`Refresher.stop` waits for a
run in progress, so a stopped service leaves no thread working for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["Refresher"]

_log = Logger()


class Refresher:
    """Runs ``job()`` while started. ``job`` returns a Deferred (it does its I/O in a
    thread and installs the result itself); its failures are logged as bugs under
    ``what``, so a job handles the failures it expects (a file it cannot read) itself."""

    def __init__(
        self,
        job: Callable[[], defer.Deferred[Any]],
        *,
        clock: IReactorTime,
        interval: float,
        what: str,
    ) -> None:
        self._job = job
        self._clock = clock
        self._interval = interval
        self._what = what
        self._periodic = False
        self._timer: IDelayedCall | None = None
        self._running: defer.Deferred[Any] | None = None
        self._again: list[defer.Deferred[None]] = []
        self._stop_waiters: list[defer.Deferred[None]] = []

    def start(self) -> None:
        """Run every ``interval`` seconds from now on."""
        self._periodic = True
        self._schedule()

    def stop(self) -> defer.Deferred[None]:
        """Run no more; fires once a run in progress has finished."""
        self._periodic = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._running is None:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._stop_waiters.append(waiter)
        return waiter

    def refresh(self) -> defer.Deferred[None]:
        """Run now; fires once a run that started after this call has finished, whether
        or not it succeeded."""
        waiter: defer.Deferred[None] = defer.Deferred()
        self._again.append(waiter)
        if self._running is None:
            self._run()
        return waiter

    def _schedule(self) -> None:
        if not self._periodic:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._clock.callLater(self._interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._running is None:
            self._run()
        else:
            self._schedule()

    def _run(self) -> None:
        waiters, self._again = self._again, []
        try:
            running = self._job()
        except Exception:
            running = defer.fail(Failure())
        running.addErrback(self._bug)
        self._running = running
        running.addBoth(self._done, waiters)

    def _bug(self, failure: Failure) -> None:
        _log.failure("{what} failed", failure, what=self._what)

    def _done(self, result: object, waiters: list[defer.Deferred[None]]) -> None:
        self._running = None
        stopping, self._stop_waiters = self._stop_waiters, []
        for waiter in waiters + stopping:
            waiter.callback(None)
        if self._again:
            self._run()
        else:
            self._schedule()
