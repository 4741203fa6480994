"""A listening port as a service that also closes its connections on stop.

Twisted's ``StreamServerEndpointService`` stops accepting but leaves established
connections open until the reactor dies. Rail's shutdown order is: stop accepting, then
close what is open (bounded by a grace period, then aborted), so a stopped service owns
no sockets and the next start finds the port free.

A listener is also where connections are bounded whatever protocol they speak: its
:class:`rail.gate.Gate` caps them per listener and per address before TLS starts, and
:class:`TrackingFactory` aborts a connection whose TLS handshake (implicit, or after
STARTTLS) has not completed within ``handshake_timeout`` seconds. Without that deadline a
client that never sends its ClientHello holds a descriptor for as long as it likes: the
protocol's own idle timeout only starts once TLS hands it data.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IListeningPort,
    IProtocolNegotiationFactory,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer

from rail.gate import Gate, GateLimits
from rail.refusals import Refusals
from rail.writethrough import use_write_through

__all__ = ["ListenError", "Listener", "TrackingFactory"]

_log = Logger()


class ListenError(Exception):
    """A port could not be bound; the message names the config key and the reason."""


HANDSHAKE_TIMEOUT = "tls_handshake_timeout"


@implementer(IHandshakeListener)
class _TrackedProtocol(ProtocolWrapper):
    """Passes the TLS handshake notification through, which ProtocolWrapper does not:
    the SMTP session takes the client's identity from it. Times the handshake."""

    factory: TrackingFactory
    _handshake: IDelayedCall | None = None

    @property
    def _io(self) -> Any:
        """The transport, typed loosely (TCP and TLS transports add ``startTLS`` and
        ``abortConnection`` to ITransport)."""
        return self.transport

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(transport)
        if self.factory.implicit_tls:
            self._start_handshake_timer()

    def startTLS(self, ctx: Any, normal: bool = True) -> None:
        """STARTTLS from the wrapped protocol: the handshake deadline starts now."""
        self._start_handshake_timer()
        self._io.startTLS(ctx, normal)

    def _start_handshake_timer(self) -> None:
        timeout = self.factory.handshake_timeout
        if timeout is not None and self._handshake is None:
            clock = self.factory.clock
            assert clock is not None
            self._handshake = clock.callLater(timeout, self._handshake_expired)

    def _handshake_expired(self) -> None:
        self._handshake = None
        peer = getattr(self._io.getPeer(), "host", "")
        self.factory.refuse(HANDSHAKE_TIMEOUT, peer)
        self._io.abortConnection()

    def _stop_handshake_timer(self) -> None:
        timer, self._handshake = self._handshake, None
        if timer is not None and timer.active():
            timer.cancel()

    def handshakeCompleted(self) -> None:
        self._stop_handshake_timer()
        if IHandshakeListener.providedBy(self.wrappedProtocol):
            self.wrappedProtocol.handshakeCompleted()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_handshake_timer()
        super().connectionLost(reason)


class TrackingFactory(WrappingFactory):
    """Remembers live connections so they can be closed, and tells when all are gone."""

    protocol = _TrackedProtocol
    implicit_tls = False
    """True when TLS starts on accept: the handshake deadline starts with the connection."""
    handshake_timeout: float | None = None
    """Seconds a TLS handshake may take; None: no deadline."""
    clock: IReactorTime | None = None
    refusals: Refusals | None = None
    name = ""

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self._idle: list[defer.Deferred[None]] = []
        # TLS picks ALPN protocols from the factory it wraps; keep the Site's visible.
        if IProtocolNegotiationFactory.providedBy(wrapped):
            directlyProvides(self, IProtocolNegotiationFactory)

    def acceptableProtocols(self) -> list[bytes]:
        protocols: list[bytes] = self.wrappedFactory.acceptableProtocols()
        return protocols

    def refuse(self, reason: str, peer: str) -> None:
        if self.refusals is not None:
            self.refusals.refuse(self.name, reason, peer)

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
    """Binds in ``privilegedStartService`` (so ``twistd --uid`` works) and fails loudly.

    ``tls`` (a server connection creator) starts TLS on accept; ``gate`` bounds the
    connections (refusals reported to ``refusals`` under the listener's name, SMTP
    ``replies`` said before closing); ``handshake_timeout`` bounds TLS handshakes, on
    accept and after STARTTLS.
    """

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        factory: Any,
        clock: IReactorTime,
        grace: float = 10.0,
        *,
        name: str = "",
        tls: Any = None,
        gate: GateLimits | None = None,
        refusals: Refusals | None = None,
        replies: Any = None,
        handshake_timeout: float | None = None,
    ) -> None:
        self._endpoint = endpoint
        self.factory = TrackingFactory(factory)
        self._clock = clock
        self._grace = grace
        self.port: IListeningPort | None = None
        if name:
            self.setName(name)
        self.factory.name = name
        self.factory.clock = clock
        self.factory.refusals = refusals
        self.factory.handshake_timeout = handshake_timeout
        self.factory.implicit_tls = tls is not None
        outer: Any = self.factory
        if tls is not None:
            outer = TLSMemoryBIOFactory(tls, False, outer, clock)
        self.gate: Gate | None = None
        if gate is not None:
            self.gate = Gate(
                outer,
                name=name,
                limits=gate,
                clock=clock,
                refusals=refusals or Refusals(clock),
                replies=replies,
            )
            outer = self.gate
        self._listening_factory = outer

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._bind()

    def startService(self) -> None:
        super().startService()
        if self.port is None:
            self._bind()

    def _bind(self) -> None:
        results: list[Any] = []
        self._endpoint.listen(self._listening_factory).addBoth(results.append)
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
