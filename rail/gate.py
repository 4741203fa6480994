"""The door of every TCP listener: a cap per listener and per client address.

The gate is the outermost factory of a listening port, outside TLS, so a connection over
a cap costs an accept and a close: no TLS state, no protocol object, no greeting. SMTP
listeners say ``421 4.7.0`` first (RFC 5321 §3.8 lets a server close at once with 421);
the others close. Every refusal is reported to :class:`rail.refusals.Refusals`.

When the listener is full, a newcomer may instead take the place of the connection that
has sent nothing for longest, if that one has been silent for ``evict_idle`` seconds:
idle connections cost the attacker nothing to hold, so without this a flood of them from
many addresses would lock every real client out until they time out one by one. A client
that is sending is never the one closed. Silence is measured in bytes received (raw bytes,
before TLS), kept in an ordered dict so that finding the most silent is O(1).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from twisted.internet.interfaces import IHandshakeListener, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from rail.connections import GateLimits, GroupCounter, peer_group
from rail.refusals import Refusals

__all__ = ["SMTP_REFUSALS", "Gate"]

PER_IP = "per_ip"
FULL = "listener_full"
EVICTED = "evicted_idle"

SMTP_REFUSALS: Mapping[str, bytes] = {
    PER_IP: b"421 4.7.0 Too many connections from your address\r\n",
    FULL: b"421 4.7.0 Too many connections, try again later\r\n",
}
"""What an SMTP listener says before closing a connection it will not serve."""


class _Refused(Protocol):
    """Says its one line and hangs up."""

    def __init__(self, line: bytes) -> None:
        self._line = line

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._line)
        self.transport.loseConnection()


@implementer(IHandshakeListener)
class _Admitted(ProtocolWrapper):
    """A connection let in: remembers its address group and when it last sent a byte,
    and gives its slots back when it ends.

    Also passes the TLS handshake notification inward: after STARTTLS the TLS layer wraps
    the outermost protocol, which is this one.
    """

    factory: Gate
    group = ""
    _counted = False

    def makeConnection(self, transport: Any) -> None:
        self.factory.admitted(self)
        self._counted = True
        super().makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self.factory.heard(self)
        self.wrappedProtocol.dataReceived(data)

    def handshakeCompleted(self) -> None:
        if IHandshakeListener.providedBy(self.wrappedProtocol):
            self.wrappedProtocol.handshakeCompleted()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._counted:
            self._counted = False
            self.factory.gone(self)
        if self.wrappedProtocol is not None:  # not lost twice
            super().connectionLost(reason)


class Gate(WrappingFactory):
    """Wraps a listener's factory (TLS included) with its caps."""

    protocol = _Admitted
    noisy = False

    def __init__(
        self,
        wrapped: Any,
        *,
        name: str,
        limits: GateLimits,
        clock: IReactorTime,
        refusals: Refusals,
        replies: Mapping[str, bytes] | None = None,
    ) -> None:
        super().__init__(wrapped)
        self.name = name
        self.limits = limits
        self.per_ip = GroupCounter(limits.per_ip)
        self._clock = clock
        self._refusals = refusals
        self._replies = replies or {}
        # Admitted connections, the most silent first; the value is when each last sent.
        self._live: OrderedDict[_Admitted, float] = OrderedDict()

    @property
    def open(self) -> int:
        """Connections admitted and not yet gone."""
        return len(self._live)

    def buildProtocol(self, addr: Any) -> Any:
        group = peer_group(str(getattr(addr, "host", addr)), self.limits.ipv6_prefix)
        if not self.per_ip.acquire(group):
            return self._refuse(PER_IP, group)
        if len(self._live) >= self.limits.max_connections and not self._evict():
            self.per_ip.release(group)
            return self._refuse(FULL, group)
        try:
            inner = self.wrappedFactory.buildProtocol(addr)
        except BaseException:
            self.per_ip.release(group)
            raise
        if inner is None:
            self.per_ip.release(group)
            return None
        protocol = _Admitted(self, inner)  # type: ignore[arg-type]  # WrappingFactory is generic
        protocol.group = group
        return protocol

    def _refuse(self, reason: str, group: str) -> Protocol | None:
        self._refusals.refuse(self.name, reason, group)
        line = self._replies.get(reason)
        if line is None:
            return None  # the port closes the socket without building anything
        refused = _Refused(line)
        refused.factory = self
        return refused

    def _evict(self) -> bool:
        """Close the most silent connection if it has been silent long enough."""
        if self.limits.evict_idle is None or not self._live:
            return False
        victim, last = next(iter(self._live.items()))
        if self._clock.seconds() - last < self.limits.evict_idle:
            return False
        # Out of the count now: its connectionLost comes on a later reactor turn.
        del self._live[victim]
        self._refusals.refuse(self.name, EVICTED, victim.group)
        transport: Any = victim.transport
        transport.abortConnection()
        return True

    # Called by _Admitted

    def admitted(self, protocol: _Admitted) -> None:
        self._live[protocol] = self._clock.seconds()

    def heard(self, protocol: _Admitted) -> None:
        live = self._live
        if protocol in live:
            live[protocol] = self._clock.seconds()
            live.move_to_end(protocol)

    def gone(self, protocol: _Admitted) -> None:
        self._live.pop(protocol, None)
        self.per_ip.release(protocol.group)
