"""A listening port as a service that also closes its connections on stop.

Twisted's ``StreamServerEndpointService`` stops accepting but leaves established
connections open until the reactor dies. Rail's shutdown order is: stop accepting, then
close what is open (bounded by a grace period, then aborted), so a stopped service owns
no sockets and the next start finds the port free.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IHandshakeListener,
    IListeningPort,
    IProtocolNegotiationFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer

from rail.writethrough import use_write_through

__all__ = ["ListenError", "Listener", "TrackingFactory"]

_log = Logger()


class ListenError(Exception):
    """A port could not be bound; the message names the config key and the reason."""


@implementer(IHandshakeListener)
class _TrackedProtocol(ProtocolWrapper):
    """Passes the TLS handshake notification through, which ProtocolWrapper does not:
    the SMTP session takes the client's identity from it."""

    def handshakeCompleted(self) -> None:
        if IHandshakeListener.providedBy(self.wrappedProtocol):
            self.wrappedProtocol.handshakeCompleted()


class TrackingFactory(WrappingFactory):
    """Remembers live connections so they can be closed, and tells when all are gone."""

    protocol = _TrackedProtocol

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self._idle: list[defer.Deferred[None]] = []
        # TLS picks ALPN protocols from the factory it wraps; keep the Site's visible.
        if IProtocolNegotiationFactory.providedBy(wrapped):
            directlyProvides(self, IProtocolNegotiationFactory)

    def acceptableProtocols(self) -> list[bytes]:
        protocols: list[bytes] = self.wrappedFactory.acceptableProtocols()
        return protocols

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            waiting, self._idle = self._idle, []
            for d in waiting:
                d.callback(None)

    def close_all(self, clock: IReactorTime, grace: float) -> defer.Deferred[None]:
        """Close every connection; abort those still open after ``grace`` seconds.

        A protocol with a ``shutdown()`` method (SMTP: ``421`` between commands, after a
        running transaction) closes itself; any other connection is closed at once.
        """
        if not self.protocols:
            return defer.succeed(None)
        done: defer.Deferred[None] = defer.Deferred()
        self._idle.append(done)
        for p in list(self.protocols):
            shutdown = _shutdown_hook(p)
            if shutdown is not None:
                shutdown()
            else:
                p.transport.loseConnection()

        def abort() -> None:
            for p in list(self.protocols):
                p.transport.abortConnection()

        timer = clock.callLater(grace, abort)

        def stop_timer(result: None) -> None:
            if timer.active():
                timer.cancel()
            return result

        return done.addBoth(stop_timer)


def _shutdown_hook(protocol: Any) -> Any:
    """The ``shutdown`` method of the first protocol that has one, from the connection's
    outermost wrapper inwards; ``None`` when none has."""
    while protocol is not None:
        shutdown = getattr(protocol, "shutdown", None)
        if callable(shutdown):
            return shutdown
        protocol = getattr(protocol, "wrappedProtocol", None)
    return None


class Listener(Service):
    """Binds in ``privilegedStartService`` (so ``twistd --uid`` works) and fails loudly."""

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        factory: Any,
        clock: IReactorTime,
        grace: float = 10.0,
    ) -> None:
        self._endpoint = endpoint
        self.factory = TrackingFactory(factory)
        self._clock = clock
        self._grace = grace
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._bind()

    def startService(self) -> None:
        super().startService()
        if self.port is None:
            self._bind()

    def _bind(self) -> None:
        results: list[Any] = []
        self._endpoint.listen(self.factory).addBoth(results.append)
        # TCP and TLS endpoints listen synchronously; an error must stop start-up now.
        if not results:
            raise RuntimeError(f"{self.name}: endpoint did not listen synchronously")
        if isinstance(results[0], Failure):
            error = results[0].value
            if isinstance(error, CannotListenError):
                reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
                where = f"{error.interface or '*'}:{error.port}"
                raise ListenError(f"listen.{self.name}: cannot listen on {where}: {reason}")
            results[0].raiseException()
        self.port = results[0]
        use_write_through(self.port)
        address = self.port.getHost()
        _log.info(
            "{name} listening on {host}:{port}",
            name=self.name,
            host=getattr(address, "host", "?"),
            port=getattr(address, "port", "?"),
        )

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return defer.succeed(None)
        stopped: defer.Deferred[Any] = defer.maybeDeferred(port.stopListening)
        return stopped.addCallback(lambda _: self.factory.close_all(self._clock, self._grace))
