"""Keeps a running server's revocation set in step with the CRL file, off the reactor.

``rail certs revoke`` is another process: it rewrites ``ca/crl.pem`` and the server has to
notice. :class:`RevocationWatch` looks every ``interval`` seconds (default 1) and whenever
:meth:`~RevocationWatch.refresh` is called (SIGHUP), running the file work
(:meth:`Revocations.look <rail.pki.revocations.Revocations.look>`: a ``stat``, and a
read, parse and signature check when the file was replaced) in a worker thread and
installing the result on the reactor thread. A look costs the same whatever happens on the
listeners, so a revocation reaches handshakes, open SMTP sessions and kept-alive HTTP
connections within about a second, and no request ever waits on the disk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.pki.revocations import Revocations

__all__ = ["DEFAULT_INTERVAL", "RevocationWatch"]

_log = Logger()

DEFAULT_INTERVAL = 1.0
"""Seconds between looks at the CRL file: the most a revocation waits to take effect."""

InThread = Callable[[Callable[[], Any]], "defer.Deferred[Any]"]


class RevocationWatch(Service):
    """The ``revocations`` service: looks at the CRL file while it runs.

    ``in_thread(f)`` runs ``f`` off the reactor thread and returns a Deferred of its
    result (``lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f)``).
    """

    name = "revocations"

    def __init__(
        self,
        revocations: Revocations,
        *,
        clock: IReactorTime,
        in_thread: InThread,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self.revocations = revocations
        self._clock = clock
        self._in_thread = in_thread
        self._interval = interval
        self._timer: IDelayedCall | None = None
        self._running_look: defer.Deferred[Any] | None = None
        self._again: list[defer.Deferred[None]] = []
        self._stop_waiters: list[defer.Deferred[None]] = []

    # Service's own start/stop only flip ``running``; set here directly because they are
    # untyped (mypy --strict).
    def startService(self) -> None:
        self.running = True
        self._schedule()

    def stopService(self) -> defer.Deferred[None]:
        """Stop looking; fires once a look in progress has finished."""
        self.running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._running_look is None:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._stop_waiters.append(waiter)
        return waiter

    def refresh(self) -> defer.Deferred[None]:
        """Look now. Fires once a look that started after this call has been applied (a
        look already running may have started before the change the caller knows of, so
        one more follows it)."""
        waiter: defer.Deferred[None] = defer.Deferred()
        self._again.append(waiter)
        if self._running_look is None:
            self._look()
        return waiter

    def _schedule(self) -> None:
        if not self.running:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._clock.callLater(self._interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._running_look is None:
            self._look()
        else:
            self._schedule()

    def _look(self) -> None:
        waiters, self._again = self._again, []
        revocations = self.revocations
        looking: defer.Deferred[Any] = self._in_thread(revocations.look)
        looking.addCallback(revocations.apply)
        looking.addErrback(self._bug)
        self._running_look = looking
        looking.addBoth(self._done, waiters)

    def _bug(self, failure: Failure) -> None:
        _log.failure("looking at the CRL failed; keeping the loaded revocations", failure)

    def _done(self, result: object, waiters: list[defer.Deferred[None]]) -> None:
        self._running_look = None
        stopping, self._stop_waiters = self._stop_waiters, []
        for waiter in waiters + stopping:
            waiter.callback(None)
        if self._again:
            self._look()
        else:
            self._schedule()
