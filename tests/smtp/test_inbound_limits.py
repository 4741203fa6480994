"""Port 25's per-address connection limit."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from rail.smtp.limits import PerAddressSMTPFactory
from rail.smtp.server import RailESMTP
from tests.smtp.helpers import LIMITS, ScriptedSession


class PerAddressLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = PerAddressSMTPFactory(
            ScriptedSession,
            hostname="mx.rail.test",
            limits=LIMITS,
            clock=self.clock,
            max_per_address=2,
        )

    def connect(self, host: str = "192.0.2.1") -> tuple[Protocol, StringTransport]:
        address: Any = (
            IPv6Address("TCP", host, 2525) if ":" in host else IPv4Address("TCP", host, 2525)
        )
        protocol = self.factory.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport

    def close(self, protocol: Protocol) -> None:
        protocol.connectionLost(Failure(ConnectionError("closed")))

    def test_limit(self) -> None:
        """The (limit+1)-th concurrent connection from one address gets 421 4.7.0 and
        is closed; other addresses are not affected."""
        first, t1 = self.connect()
        second, t2 = self.connect()
        self.assertIsInstance(first, RailESMTP)
        self.assertTrue(t2.value().startswith(b"220 mx.rail.test"))
        third, t3 = self.connect()
        self.assertNotIsInstance(third, RailESMTP)
        self.assertEqual(t3.value(), b"421 4.7.0 Too many connections from your address\r\n")
        self.assertTrue(t3.disconnecting)
        other, t4 = self.connect("192.0.2.2")
        self.assertIsInstance(other, RailESMTP)
        self.assertEqual(self.factory.counter.count("192.0.2.1"), 2)

    def test_release_on_disconnect(self) -> None:
        """A closed connection frees its slot; refused ones never held one; addresses
        with no connection leave no entry behind, and no timer is left."""
        first, _ = self.connect()
        second, _ = self.connect()
        refused, _ = self.connect()
        self.close(refused)
        self.assertEqual(self.factory.counter.count("192.0.2.1"), 2)
        self.close(first)
        self.assertEqual(self.factory.counter.count("192.0.2.1"), 1)
        again, transport = self.connect()
        self.assertIsInstance(again, RailESMTP)
        self.close(second)
        self.close(again)
        self.close(again)  # a second connectionLost does not release twice
        self.assertEqual(self.factory.counter.count("192.0.2.1"), 0)
        self.assertEqual(self.factory.counter._open, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_quit_releases(self) -> None:
        """A session that ends with QUIT gives its slot back once the transport reports
        the connection lost."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"QUIT\r\n")
        self.assertTrue(transport.disconnecting)
        self.close(protocol)
        self.assertEqual(self.factory.counter.count("192.0.2.1"), 0)

    def test_ipv4_mapped(self) -> None:
        """An IPv4-mapped IPv6 peer counts as its IPv4 address."""
        self.connect("192.0.2.1")
        self.connect("::ffff:192.0.2.1")
        _, transport = self.connect("192.0.2.1")
        self.assertTrue(transport.value().startswith(b"421 4.7.0"))
        self.connect("2001:db8::1")
        self.assertEqual(self.factory.counter.count("2001:db8::1"), 1)
