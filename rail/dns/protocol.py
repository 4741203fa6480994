"""DNS over UDP and TCP: framing, the own-address check, TCP idle and connection limits.

Each message goes to :meth:`rail.dns.server.DNSServer.respond`; what comes back is sent,
``None`` is not. Over UDP, a datagram that claims to come from the server's own address
and port (or from port 0) is dropped before parsing: answering it would send Rail a
packet from itself (the CVE-2024-2169 loop). Over TCP (RFC 7766), a connection that
sends nothing for ``idle_timeout`` seconds is closed, at most ``max_connections`` are
open at once, and a message that gets no answer (malformed, QR=1) closes the connection.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol, connectionDone
from twisted.protocols.basic import Int16StringReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from rail.dns.server import DNSServer

__all__ = ["DNSUDP", "DNSStream", "DNSStreamFactory"]

_WILDCARDS = ("0.0.0.0", "::")  # noqa: S104 (compared with, not bound)


class DNSUDP(DatagramProtocol):
    """The UDP side: one datagram, one answer (or none)."""

    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self._own: tuple[str, int] | None = None

    def startProtocol(self) -> None:
        assert self.transport is not None
        host = self.transport.getHost()
        self._own = (host.host, host.port)

    def _from_self(self, host: str, port: int) -> bool:
        if port == 0:
            return True
        if self._own is None or port != self._own[1]:
            return False
        own_host = self._own[0]
        if host == own_host:
            return True
        if own_host in _WILDCARDS:
            try:
                return ipaddress.ip_address(host.partition("%")[0]).is_loopback
            except ValueError:
                return False
        return False

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        host, port = addr[0], addr[1]
        if self._from_self(host, port):
            self.server.counts["dropped"] += 1
            return
        response = self.server.respond(datagram, host)
        if response is not None and self.transport is not None:
            try:
                self.transport.write(response, addr)
            except OSError:
                # Unreachable or filtered destination: nothing to retry for a datagram.
                self.server.counts["unsent"] += 1


class DNSStream(Int16StringReceiver, TimeoutMixin):
    """One TCP connection: length-prefixed messages, answered in order."""

    def __init__(self, owner: DNSStreamFactory) -> None:
        self.owner = owner
        self.callLater = owner.clock.callLater  # type: ignore[method-assign,assignment]

    @property
    def _io(self) -> Any:
        """The TCP transport, typed loosely (``ITransport`` lacks ``abortConnection``)."""
        return self.transport

    def connectionMade(self) -> None:
        self.owner.connections.add(self)
        self.setTimeout(self.owner.idle_timeout)  # type: ignore[no-untyped-call, unused-ignore]

    def stringReceived(self, string: bytes) -> None:
        self.resetTimeout()  # type: ignore[no-untyped-call, unused-ignore]
        response = self.owner.server.respond(string, None)
        if response is None:
            self._io.loseConnection()
            return
        self.sendString(response)  # type: ignore[no-untyped-call, unused-ignore]

    def timeoutConnection(self) -> None:
        self._io.abortConnection()

    def abort(self) -> None:
        self._io.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.setTimeout(None)  # type: ignore[no-untyped-call, unused-ignore]
        self.owner.lost(self)


class DNSStreamFactory(Factory):
    """Builds :class:`DNSStream` connections and can close them all."""

    noisy = False

    def __init__(
        self,
        server: DNSServer,
        clock: IReactorTime,
        idle_timeout: float = 10.0,
        max_connections: int | None = 256,
    ) -> None:
        """``max_connections`` None: no bound here (a :class:`rail.gate.Gate` in front
        of the factory bounds the connections)."""
        self.server = server
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.connections: set[DNSStream] = set()
        self._idle: list[defer.Deferred[None]] = []

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        if self.max_connections is not None and len(self.connections) >= self.max_connections:
            return None
        return DNSStream(self)

    def lost(self, protocol: DNSStream) -> None:
        self.connections.discard(protocol)
        if not self.connections:
            waiting, self._idle = self._idle, []
            for d in waiting:
                d.callback(None)

    def close_all(self) -> defer.Deferred[None]:
        """Abort every open connection; fires once all are gone."""
        if not self.connections:
            return defer.succeed(None)
        done: defer.Deferred[None] = defer.Deferred()
        self._idle.append(done)
        for connection in list(self.connections):
            connection.abort()
        return done
