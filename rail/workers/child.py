"""A worker's side of the supervision: the sockets it adopts, the status it reports, the
signals it answers.

The listening sockets are the parent's (see :mod:`rail.workers.plan` for the
descriptors): a worker adopts them (``IReactorSocket``) instead of binding, so a
worker that stops closes only its copy and the others keep accepting. Status lines
(``READY=1``, ``STOPPING=1``, ``RELOAD=1``) go to the parent on descriptor 3, the parent's own
``$NOTIFY_SOCKET`` in small. Descriptor 0 is a pipe from the parent: its end means the
parent died without stopping the worker, which then stops as on SIGTERM rather than
hold the sockets alone.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.stdio import StandardIO
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from rail.workers.plan import STATUS_FD

__all__ = [
    "AdoptedEndpoint",
    "ParentChannel",
    "adopt_datagram",
    "adopt_stream",
    "family_of",
    "stop_once",
]

_log = Logger()


def family_of(fd: int) -> int:
    """The address family of the socket at descriptor ``fd`` (which stays open)."""
    probe = socket.socket(fileno=fd)
    try:
        return int(probe.family)
    finally:
        probe.detach()


@implementer(IStreamServerEndpoint)
class AdoptedEndpoint:
    """Listens on the parent's socket at ``fd`` (the reactor listens on a duplicate, so
    stopping closes this worker's copy only)."""

    def __init__(self, reactor: Any, fd: int) -> None:
        self._reactor = reactor
        self._fd = fd

    def listen(self, factory: Any) -> defer.Deferred[IListeningPort]:
        return defer.execute(adopt_stream, self._reactor, self._fd, factory)


def adopt_stream(reactor: Any, fd: int, factory: Any) -> Any:
    """The listening stream port on the parent's socket at ``fd``."""
    return reactor.adoptStreamPort(fd, family_of(fd), factory)


def adopt_datagram(reactor: Any, fd: int, protocol: Any) -> Any:
    """The listening datagram port on the parent's socket at ``fd``."""
    return reactor.adoptDatagramPort(fd, family_of(fd), protocol)


class ParentChannel(Protocol):
    """Status lines to the parent; the end of the parent's pipe stops this worker."""

    def __init__(self, parent_gone: Callable[[int], None]) -> None:
        self._parent_gone = parent_gone
        self._open = False
        self._stopping = False

    @classmethod
    def open(cls, reactor: Any, parent_gone: Callable[[int], None]) -> ParentChannel:
        """The channel on descriptors 0 and 3; ``parent_gone(SIGTERM)`` is called when
        the parent's pipe ends."""
        channel = cls(parent_gone)
        # mypy reads the Windows signature; POSIX's takes the descriptors.
        StandardIO(channel, stdin=0, stdout=STATUS_FD, reactor=reactor)  # type: ignore[call-arg]
        return channel

    def connectionMade(self) -> None:
        self._open = True

    def send(self, state: str) -> None:
        """Tell the parent ``state`` (``READY=1``, ``STOPPING=1``, ``RELOAD=1``: reload
        the other workers)."""
        if state == "STOPPING=1":
            self._stopping = True  # the pipe's end from now on is this worker's own
        if self._open and self.transport is not None:
            self.transport.write(state.encode("ascii") + b"\n")

    def dataReceived(self, data: bytes) -> None:
        """The parent says nothing on this pipe; its end is the message."""

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        was_open, self._open = self._open, False
        if was_open and not self._stopping:
            _log.warn("the parent process is gone: stopping")
            self._parent_gone(signal.SIGTERM)


def stop_once(reactor: Any) -> Callable[..., None]:
    """A handler of SIGTERM and SIGINT that stops the reactor once: under a terminal or
    systemd the signal reaches a worker both directly and from the parent, and Twisted's
    own handler would fail on the second (the reactor is already stopping). The first is
    Twisted's, so twistd still ends by re-raising the signal."""
    handled = [False]

    def stop(signum: int, frame: Any = None) -> None:
        if handled[0] or getattr(reactor, "_stopped", False):
            return
        handled[0] = True
        own = reactor.sigInt if signum == signal.SIGINT else reactor.sigTerm
        own(signum, frame)

    return stop
