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
from twisted.internet.interfaces import IReactorTime

from rail.pki.revocations import Revocations
from rail.refresher import Refresher

__all__ = ["DEFAULT_INTERVAL", "RevocationWatch"]

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
        self._in_thread = in_thread
        self._refresher = Refresher(
            self._look,
            clock=clock,
            interval=interval,
            what="looking at the CRL (the loaded revocations are kept)",
        )

    # Service's own start/stop only flip ``running``; set here directly because they are
    # untyped (mypy --strict).
    def startService(self) -> None:
        self.running = True
        self._refresher.start()

    def stopService(self) -> defer.Deferred[None]:
        """Stop looking; fires once a look in progress has finished."""
        self.running = False
        return self._refresher.stop()

    def refresh(self) -> defer.Deferred[None]:
        """Look now. Fires once a look that started after this call has been applied (a
        look already running may have started before the change the caller knows of, so
        one more follows it)."""
        return self._refresher.refresh()

    def _look(self) -> defer.Deferred[Any]:
        revocations = self.revocations
        looking: defer.Deferred[Any] = self._in_thread(revocations.look)
        return looking.addCallback(revocations.apply)
