"""The listener gate: caps per listener and per address, eviction, refusals, and the
TLS handshake deadline of the tracking layer behind it."""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from prometheus_client import generate_latest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from rail.connections import GateLimits
from rail.gate import SMTP_REFUSALS, Gate
from rail.listener import Listener, TrackingFactory
from rail.refusals import Refusals
from rail.smtp.factory import SMTPServerFactory
from rail.smtp.server import RailESMTP
from tests.smtp.helpers import LIMITS, ScriptedSession


@implementer(IHandshakeListener)
class _Recorder(Protocol):
    """Records what reaches the innermost protocol."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.handshakes = 0
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def handshakeCompleted(self) -> None:
        self.handshakes += 1

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = True


class _TLSStringTransport(StringTransport):
    """A StringTransport that records STARTTLS."""

    tls_started = False
    disconnected = False

    def startTLS(self, ctx: Any, normal: bool = True) -> None:
        self.tls_started = True


def _address(host: str) -> Any:
    if ":" in host:
        return IPv6Address("TCP", host, 40000)
    return IPv4Address("TCP", host, 40000)


class _GateCase(SynchronousTestCase):
    smtp = False

    def make(self, **limits: Any) -> None:
        self.clock = Clock()
        self.refusals = Refusals(self.clock)
        values: dict[str, Any] = {"max_connections": 10, "per_ip": 3, **limits}
        if self.smtp:
            inner: Any = SMTPServerFactory(
                ScriptedSession, hostname="mx.rail.test", limits=LIMITS, clock=self.clock
            )
        else:
            inner = Factory.forProtocol(_Recorder)
        self.tracking = TrackingFactory(inner)
        self.tracking.clock = self.clock
        self.tracking.refusals = self.refusals
        self.tracking.name = "test"
        self.gate = Gate(
            self.tracking,
            name="test",
            limits=GateLimits(**values),
            clock=self.clock,
            refusals=self.refusals,
            replies=SMTP_REFUSALS if self.smtp else None,
        )

    def connect(self, host: str = "192.0.2.1") -> tuple[Any, StringTransport]:
        """A connection from ``host`` as a port makes it; (None, transport) if closed
        without a protocol."""
        protocol = self.gate.buildProtocol(_address(host))
        transport = _TLSStringTransport(peerAddress=_address(host))
        if protocol is not None:
            protocol.makeConnection(transport)
        return protocol, transport

    def close(self, protocol: Any) -> None:
        protocol.connectionLost(Failure(ConnectionError("closed")))

    def inner(self, protocol: Any) -> Any:
        """The innermost protocol behind the gate and the tracking wrapper."""
        return protocol.wrappedProtocol.wrappedProtocol

    def refused(self, reason: str) -> int:
        return self.refusals.counts.get(("test", reason), 0)


class PerAddressTests(_GateCase):
    def setUp(self) -> None:
        self.make()

    def test_per_ip_cap_closes_without_protocol(self) -> None:
        """The connection beyond ``per_ip`` from one address is closed before any
        protocol (or TLS) is built, and counted; other addresses are unaffected."""
        for _ in range(3):
            protocol, _ = self.connect()
            self.assertIsNotNone(protocol)
        refused, _ = self.connect()
        self.assertIsNone(refused)
        self.assertEqual(self.refused("per_ip"), 1)
        other, _ = self.connect("192.0.2.2")
        self.assertIsNotNone(other)
        self.assertEqual(self.gate.per_ip.count("192.0.2.1"), 3)

    def test_ipv6_prefix_shares_a_slot_count(self) -> None:
        """Addresses in one IPv6 /64 share the per-address bound; IPv4-mapped addresses
        count as their IPv4 address."""
        for suffix in ("1", "2", "3"):
            self.assertIsNotNone(self.connect(f"2001:db8:0:1::{suffix}")[0])
        self.assertIsNone(self.connect("2001:db8:0:1::4")[0])
        self.assertIsNotNone(self.connect("2001:db8:0:2::1")[0])
        self.connect("192.0.2.9")
        self.connect("::ffff:192.0.2.9")
        self.connect("192.0.2.9")
        self.assertIsNone(self.connect("::ffff:192.0.2.9")[0])

    def test_release_on_close(self) -> None:
        """A closed connection frees its slots once; no entry or timer is left behind."""
        first, _ = self.connect()
        second, _ = self.connect()
        self.close(first)
        self.close(first)
        self.assertEqual((self.gate.per_ip.count("192.0.2.1"), self.gate.open), (1, 1))
        self.close(second)
        self.assertEqual((len(self.gate.per_ip), self.gate.open), (0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_handshake_notification_passes_through(self) -> None:
        """After STARTTLS the TLS layer wraps the gate's protocol: its handshake
        notification reaches the application protocol."""
        protocol, _ = self.connect()
        self.assertTrue(IHandshakeListener.providedBy(protocol))
        protocol.handshakeCompleted()
        self.assertEqual(self.inner(protocol).handshakes, 1)


class ListenerCapTests(_GateCase):
    def test_full_listener_refuses(self) -> None:
        """Without eviction, the connection beyond ``max_connections`` is closed and
        counted, and does not keep its address's slot."""
        self.make(max_connections=2, per_ip=5)
        self.connect("192.0.2.1")
        self.connect("192.0.2.2")
        protocol, _ = self.connect("192.0.2.3")
        self.assertIsNone(protocol)
        self.assertEqual(self.refused("listener_full"), 1)
        self.assertEqual(self.gate.per_ip.count("192.0.2.3"), 0)

    def test_full_listener_evicts_most_silent(self) -> None:
        """When full, a newcomer replaces the connection silent for longest if it has
        been silent ``evict_idle`` seconds; a connection that sent since is kept."""
        self.make(max_connections=2, per_ip=5, evict_idle=5.0)
        old, old_transport = self.connect("192.0.2.1")
        self.clock.advance(1)
        talker, talker_transport = self.connect("192.0.2.2")
        self.clock.advance(5)
        talker.dataReceived(b"hello")
        newcomer, _ = self.connect("192.0.2.3")
        self.assertIsNotNone(newcomer)
        self.assertTrue(old_transport.disconnected)
        self.assertFalse(talker_transport.disconnecting)
        self.assertEqual(self.refused("evicted_idle"), 1)
        self.assertEqual(self.gate.open, 2)
        # The evicted connection's address slot is released when it is really gone.
        self.assertEqual(self.gate.per_ip.count("192.0.2.1"), 1)
        self.close(old)
        self.assertEqual(self.gate.per_ip.count("192.0.2.1"), 0)
        self.assertEqual(self.gate.open, 2)

    def test_no_eviction_of_recent_talkers(self) -> None:
        """When every connection has sent within ``evict_idle``, the newcomer is refused."""
        self.make(max_connections=2, per_ip=5, evict_idle=5.0)
        self.connect("192.0.2.1")
        self.connect("192.0.2.2")
        self.clock.advance(4)
        self.assertIsNone(self.connect("192.0.2.3")[0])
        self.assertEqual(self.refused("listener_full"), 1)
        self.assertEqual(self.refused("evicted_idle"), 0)

    def test_full_listener_shares_between_addresses(self) -> None:
        """When full and nobody is silent, an address holding more than the newcomer's
        would gives up its oldest connection; an address as crowded as the largest is
        refused; once all hold one each, newcomers are refused."""
        self.make(max_connections=4, per_ip=5, evict_idle=5.0)
        crowd = [self.connect("192.0.2.1") for _ in range(3)]
        self.connect("192.0.2.2")
        newcomer, _ = self.connect("192.0.2.3")
        self.assertIsNotNone(newcomer)
        self.assertTrue(crowd[0][1].disconnected)
        self.assertFalse(crowd[1][1].disconnected)
        self.assertEqual(self.refused("evicted_share"), 1)
        self.assertIsNone(self.connect("192.0.2.1")[0])
        self.assertEqual(self.refused("listener_full"), 1)
        self.assertIsNotNone(self.connect("192.0.2.4")[0])  # 192.0.2.1 still held two
        self.assertIsNone(self.connect("192.0.2.5")[0])
        self.assertEqual(self.refused("listener_full"), 2)
        for protocol, _ in crowd:
            self.close(protocol)
        self.assertEqual(self.gate.per_ip.count("192.0.2.1"), 0)
        self.assertEqual(self.gate.open, 3)

    def test_eviction_off(self) -> None:
        """``evict_idle: None`` refuses every newcomer to a full listener."""
        self.make(max_connections=2, per_ip=5, evict_idle=None)
        self.connect("192.0.2.1")
        self.connect("192.0.2.1")
        self.clock.advance(3600)
        self.assertIsNone(self.connect("192.0.2.2")[0])
        self.assertEqual(self.refused("listener_full"), 1)

    def test_bytes_reach_the_protocol(self) -> None:
        """The gate is transparent to data."""
        self.make()
        protocol, _ = self.connect()
        protocol.dataReceived(b"abc")
        self.assertEqual(self.inner(protocol).received, [b"abc"])

    def test_metrics(self) -> None:
        """Refusals appear in the Prometheus registry by listener and reason."""
        self.make(max_connections=1, per_ip=1)
        self.connect("192.0.2.1")
        self.connect("192.0.2.1")
        self.connect("192.0.2.2")
        text = generate_latest(self.refusals.registry).decode()
        self.assertIn('rail_refusals_total{listener="test",reason="per_ip"} 1.0', text)
        self.assertIn('rail_refusals_total{listener="test",reason="listener_full"} 1.0', text)


class SMTPGateTests(_GateCase):
    """Port 25: what PerAddressSMTPFactory did, now the gate's job."""

    smtp = True

    def test_per_ip_says_421(self) -> None:
        """The (limit+1)-th concurrent connection from one address gets ``421 4.7.0``
        and is closed; the others were greeted."""
        self.make(per_ip=2)
        first, t1 = self.connect()
        self.assertIsInstance(self.inner(first), RailESMTP)
        self.assertTrue(t1.value().startswith(b"220 mx.rail.test"))
        self.connect()
        third, t3 = self.connect()
        self.assertEqual(t3.value(), b"421 4.7.0 Too many connections from your address\r\n")
        self.assertTrue(t3.disconnecting)
        self.close(third)  # a refused connection held no slot
        self.assertEqual(self.gate.per_ip.count("192.0.2.1"), 2)

    def test_full_says_421(self) -> None:
        """A full SMTP listener answers ``421 4.7.0`` too."""
        self.make(max_connections=1, per_ip=5)
        self.connect("192.0.2.1")
        _, transport = self.connect("192.0.2.2")
        self.assertEqual(transport.value(), b"421 4.7.0 Too many connections, try again later\r\n")

    def test_quit_releases(self) -> None:
        """A session that ends with QUIT gives its slot back once the transport reports
        the connection lost."""
        self.make(per_ip=1)
        protocol, transport = self.connect()
        protocol.dataReceived(b"QUIT\r\n")
        self.assertTrue(transport.disconnecting)
        self.close(protocol)
        self.assertEqual(self.gate.per_ip.count("192.0.2.1"), 0)


class HandshakeDeadlineTests(_GateCase):
    def setUp(self) -> None:
        self.make()
        self.tracking.handshake_timeout = 10.0

    def test_implicit_tls_deadline(self) -> None:
        """On a TLS listener, a connection whose handshake is not complete after the
        deadline is aborted and counted."""
        self.tracking.implicit_tls = True
        protocol, transport = self.connect()
        self.clock.advance(9.9)
        self.assertFalse(transport.disconnected)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.refused("tls_handshake_timeout"), 1)
        self.close(protocol)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_completed_handshake_cancels(self) -> None:
        """A completed handshake stops the deadline; the connection stays."""
        self.tracking.implicit_tls = True
        protocol, transport = self.connect()
        protocol.handshakeCompleted()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(60)
        self.assertFalse(transport.disconnected)

    def test_plain_connection_has_no_deadline(self) -> None:
        """Without TLS on accept no deadline runs until STARTTLS."""
        protocol, transport = self.connect()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.close(protocol)

    def test_starttls_deadline(self) -> None:
        """STARTTLS from the application starts the deadline; it is cut if the handshake
        does not complete, and kept if it does."""
        protocol, transport = self.connect()
        tracked = protocol.wrappedProtocol
        tracked.startTLS(object())
        self.assertTrue(transport.tls_started)
        self.clock.advance(10)
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.refused("tls_handshake_timeout"), 1)

        protocol, transport = self.connect("192.0.2.2")
        protocol.wrappedProtocol.startTLS(object())
        protocol.handshakeCompleted()  # as the TLS layer calls it, on the outermost protocol
        self.clock.advance(10)
        self.assertFalse(transport.disconnected)
        self.assertEqual(self.inner(protocol).handshakes, 1)

    def test_connection_lost_cancels(self) -> None:
        """A connection that closes during its handshake leaves no timer."""
        self.tracking.implicit_tls = True
        protocol, _ = self.connect()
        self.close(protocol)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _Context:
    """The least a TLS context factory is: no handshake happens in these tests."""

    def getContext(self) -> SSL.Context:
        return SSL.Context(SSL.TLS_METHOD)


class ListenerLayersTests(SynchronousTestCase):
    def test_gate_is_outside_tls(self) -> None:
        """A TLS listener listens with its gate outermost, then TLS, then the tracking
        layer: a connection over a cap is refused before any TLS state exists."""
        reactor = MemoryReactorClock()
        inner = Factory.forProtocol(_Recorder)
        listener = Listener(
            TCP4ServerEndpoint(reactor, 0),
            inner,
            reactor,
            name="submission",
            tls=_Context(),
            gate=GateLimits(max_connections=5, per_ip=1),
            refusals=Refusals(reactor),
            handshake_timeout=10.0,
        )
        listener.privilegedStartService()
        listened = reactor.tcpServers[0][1]
        self.assertIs(listened, listener.gate)
        self.assertIsInstance(listened.wrappedFactory, TLSMemoryBIOFactory)
        self.assertIs(listened.wrappedFactory.wrappedFactory, listener.factory)
        self.assertIs(listener.factory.wrappedFactory, inner)
        self.assertTrue(listener.factory.implicit_tls)
        self.assertEqual(listener.factory.handshake_timeout, 10.0)

    def test_plain_listener_without_gate(self) -> None:
        """Without TLS or bounds, a listener listens with its tracking factory as before."""
        reactor = MemoryReactorClock()
        listener = Listener(TCP4ServerEndpoint(reactor, 0), Factory.forProtocol(_Recorder), reactor)
        listener.privilegedStartService()
        self.assertIs(reactor.tcpServers[0][1], listener.factory)
        self.assertFalse(listener.factory.implicit_tls)


class TransportInterfaceTests(_GateCase):
    def test_wrapper_carries_the_transport_interfaces_every_time(self) -> None:
        """The admitted wrapper provides what its transport provides, on the first
        connection of a transport class and on later ones (where the declaration is
        reused), and a transport with declarations of its own gets exactly those."""
        from twisted.internet.interfaces import ITLSTransport, ITransport
        from zope.interface import directlyProvides

        self.make()
        first, _ = self.connect("192.0.2.1")
        second, _ = self.connect("192.0.2.2")
        third = self.gate.buildProtocol(_address("192.0.2.3"))
        special = _TLSStringTransport(peerAddress=_address("192.0.2.3"))
        directlyProvides(special, ITLSTransport)
        third.makeConnection(special)
        fourth, _ = self.connect("192.0.2.4")
        self.assertEqual(
            [
                (ITransport.providedBy(p), ITLSTransport.providedBy(p))
                for p in (first, second, third, fourth)
            ],
            [(True, False), (True, False), (True, True), (True, False)],
        )
