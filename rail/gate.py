"""The door of every TCP listener: a cap per listener and per client address.

The gate is the outermost factory of a listening port, outside TLS, so a connection over
a cap costs an accept and a close: no TLS state, no protocol object, no greeting. SMTP
listeners say ``421 4.7.0`` first (RFC 5321 §3.8 lets a server close at once with 421);
the others close. Every refusal is reported to :class:`rail.refusals.Refusals`.

When a listener is full, a newcomer may take another connection's place instead of being
refused, because idle connections cost an attacker nothing to hold: without this, a flood
of them from many addresses locks every real client out until they time out one by one.
In order:

1. the connection that has sent nothing for longest goes, if it has been silent for
   ``evict_idle`` seconds (silence is measured in raw bytes received, before TLS, in an
   ordered dict so that finding the most silent is O(1));
2. otherwise, if some address holds more connections than the newcomer's address would,
   that address's oldest connection goes: when connections are scarce, every address gets
   an equal share, so an attacker that keeps its connections busy (a byte a second) still
   cannot keep out a client arriving from an address of its own. The addresses are kept in
   buckets by how many connections they hold, so finding the largest costs at most
   ``per_ip`` steps.

Otherwise the newcomer is refused. ``evict_idle: None`` turns both off.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from twisted.internet.interfaces import IHandshakeListener, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer, providedBy

from rail.connections import GateLimits, GroupCounter, peer_group
from rail.refusals import Refusals

__all__ = ["SMTP_REFUSALS", "Gate"]

PER_IP = "per_ip"
FULL = "listener_full"
EVICTED = "evicted_idle"
EVICTED_SHARE = "evicted_share"

SMTP_REFUSALS: Mapping[str, bytes] = {
    PER_IP: b"421 4.7.0 Too many connections from your address\r\n",
    FULL: b"421 4.7.0 Too many connections, try again later\r\n",
}
"""What an SMTP listener says before closing a connection it will not serve."""


_PROVIDES: dict[type, Any] = {}
"""Transport class -> the interface declaration an :class:`_Admitted` over it carries."""


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
        # ProtocolWrapper.makeConnection, with the transport's interfaces worked out once
        # per transport class: zope's directlyProvides re-derives them on every call
        # (~17 us, 2% of a one-message SMTP session), and a listening port's transports
        # declare nothing of their own.
        kind = type(transport)
        provides = _PROVIDES.get(kind)
        if provides is not None and "__provides__" not in vars(transport):
            self.__provides__ = provides
        else:
            directlyProvides(self, providedBy(transport))
            if "__provides__" not in vars(transport):
                _PROVIDES[kind] = self.__provides__
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        self.wrappedProtocol.makeConnection(self)  # type: ignore[arg-type]  # it is one

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
        # Each address group's admitted connections, oldest first, and the groups by how
        # many they hold (bucket n: groups with n); _top is at least the largest n in use.
        self._members: dict[str, dict[_Admitted, None]] = {}
        self._buckets: list[set[str]] = [set() for _ in range(limits.per_ip + 2)]
        self._top = 0

    @property
    def open(self) -> int:
        """Connections admitted and not yet gone."""
        return len(self._live)

    def buildProtocol(self, addr: Any) -> Any:
        group = peer_group(str(getattr(addr, "host", addr)), self.limits.ipv6_prefix)
        if not self.per_ip.acquire(group):
            return self._refuse(PER_IP, group)
        if len(self._live) >= self.limits.max_connections and not self._evict(group):
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

    def _evict(self, newcomer: str) -> bool:
        """Make room for a connection from ``newcomer``'s group (see the module's rules)."""
        if self.limits.evict_idle is None or not self._live:
            return False
        victim, last = next(iter(self._live.items()))
        if self._clock.seconds() - last >= self.limits.evict_idle:
            self._drop(victim, EVICTED)
            return True
        largest = self._largest()
        if largest is None:
            return False
        members = self._members[largest]
        if len(members) <= len(self._members.get(newcomer, ())) + 1:
            return False
        self._drop(next(iter(members)), EVICTED_SHARE)
        return True

    def _largest(self) -> str | None:
        buckets = self._buckets
        while self._top > 0 and not buckets[self._top]:
            self._top -= 1
        if self._top == 0:
            return None
        return next(iter(buckets[self._top]))

    def _drop(self, victim: _Admitted, reason: str) -> None:
        # Out of the counts now: its connectionLost comes on a later reactor turn.
        self._forget(victim)
        self._refusals.refuse(self.name, reason, victim.group)
        transport: Any = victim.transport
        transport.abortConnection()

    def _forget(self, protocol: _Admitted) -> None:
        if self._live.pop(protocol, None) is None:
            return
        members = self._members[protocol.group]
        before = len(members)
        del members[protocol]
        self._buckets[before].discard(protocol.group)
        if before > 1:
            self._buckets[before - 1].add(protocol.group)
        else:
            del self._members[protocol.group]

    # Called by _Admitted

    def admitted(self, protocol: _Admitted) -> None:
        self._live[protocol] = self._clock.seconds()
        members = self._members.setdefault(protocol.group, {})
        before = len(members)
        members[protocol] = None
        if before:
            self._buckets[before].discard(protocol.group)
        self._buckets[before + 1].add(protocol.group)
        self._top = max(self._top, before + 1)

    def heard(self, protocol: _Admitted) -> None:
        live = self._live
        if protocol in live:
            live[protocol] = self._clock.seconds()
            live.move_to_end(protocol)

    def gone(self, protocol: _Admitted) -> None:
        self._forget(protocol)
        self.per_ip.release(protocol.group)
