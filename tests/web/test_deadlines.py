"""HTTP request deadlines: the header section in bounded time, the body at a minimum rate."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from rail.refusals import Refusals
from rail.web.site import RailSite

_PEER = IPv4Address("TCP", "192.0.2.7", 40000)


class _Echo(Resource):
    """Answers GET with ``ok`` and POST with the body's length."""

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"ok"

    def render_POST(self, request: Any) -> bytes:
        return str(len(request.content.read())).encode()


class DeadlineTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.refusals = Refusals(self.clock)
        self.site = RailSite(
            _Echo(),
            max_body=1_000_000,
            idle_timeout=60.0,
            clock=self.clock,
            header_timeout=10.0,
            body_grace=10.0,
            body_min_rate=100,
            refusals=self.refusals,
            name="https",
        )
        self.transport = StringTransport(peerAddress=_PEER)
        self.channel: Any = self.site.buildProtocol(_PEER)
        self.channel.makeConnection(self.transport)

    def tearDown(self) -> None:
        if self.channel is not None:
            self.channel.connectionLost(Failure(ConnectionError("closed")))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def assert_408(self, reason: str) -> None:
        head, _, body = self.transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 408 "), head)
        self.assertIn(b"Connection: close", head)
        self.assertEqual(json.loads(body)["error"]["code"], "REQUEST_TIMEOUT")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.refusals.counts, {("https", reason): 1})

    def test_trickled_headers_time_out(self) -> None:
        """A header line every 3 s keeps the idle timeout at bay but not the header
        deadline: 10 s after connecting, 408 and close."""
        self.send(b"GET / HTTP/1.1\r\n")
        for i in range(3):
            self.clock.advance(3)
            self.send(b"X-Slow-%d: 1\r\n" % i)
        self.assertEqual(self.transport.value(), b"")
        self.clock.advance(1)
        self.assert_408("http_header_timeout")
        self.send(b"Host: late\r\n\r\n")  # nothing more is read
        self.assertNotIn(b"200 OK", self.transport.value())

    def test_silent_connection_times_out(self) -> None:
        """A connection that sends no request at all is closed at the header deadline,
        before the (longer) idle timeout."""
        self.clock.advance(10)
        self.assert_408("http_header_timeout")

    def test_prompt_request_is_served(self) -> None:
        """Headers complete within the deadline: answered, and the deadline is gone."""
        self.clock.advance(9)
        self.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200 OK", self.transport.value())
        self.clock.advance(30)
        self.assertFalse(self.transport.disconnecting)

    def test_keep_alive_waits_for_first_byte(self) -> None:
        """Between requests only the idle timeout runs; the next request's header deadline
        starts with its first byte."""
        self.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.transport.clear()
        self.clock.advance(50)
        self.assertFalse(self.transport.disconnecting)
        self.send(b"GET / HTTP/1.1\r\n")
        self.clock.advance(9)
        self.send(b"Host: x\r\n")
        self.clock.advance(1)
        self.assert_408("http_header_timeout")

    def test_keep_alive_requests_share_one_timer(self) -> None:
        """Requests on a kept-alive connection add no timers: one per connection serves
        every request's header and body bounds, besides twisted.web's idle timeout."""
        for _ in range(20):
            self.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab")
        self.assertEqual(self.transport.value().count(b"200 OK"), 40)
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)

    def test_bound_after_a_long_body(self) -> None:
        """A fast big body moves the timer far out; the next request's header deadline
        still applies from its first byte."""
        self.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        self.clock.advance(10)
        self.send(b"c" * 100_000)  # enough for 1,000 s at 100 bytes/s
        self.transport.clear()
        self.send(b"GET / HTTP/1.1\r\n")
        self.clock.advance(10)
        self.assert_408("http_header_timeout")

    def test_slow_body_times_out(self) -> None:
        """A body byte every 3 s is within the 10 s grace, then far under 100 bytes/s:
        408 at the first check after the grace that finds it behind."""
        self.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(3):
            self.clock.advance(3)
            self.send(b"a")
        self.clock.advance(1)
        self.assertEqual(self.transport.value(), b"")
        self.clock.advance(1)
        self.assert_408("http_body_rate")

    def test_body_at_rate_is_served(self) -> None:
        """A body that keeps up with the minimum rate, however long it takes, is read and
        the request answered."""
        self.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n")
        for _ in range(29):
            self.send(b"b" * 100)
            self.clock.advance(1)
        self.send(b"b" * 100)
        self.assertIn(b"200 OK", self.transport.value())
        self.assertTrue(self.transport.value().endswith(b"3000"))
        self.assertEqual(self.refusals.counts, {})

    def test_chunked_body_rate(self) -> None:
        """A chunked body of unknown length is held to the same rate."""
        self.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.send(b"1\r\na\r\n")
        self.clock.advance(12)
        self.assert_408("http_body_rate")


class NoDeadlineTests(SynchronousTestCase):
    def test_without_settings_only_idle_timeout(self) -> None:
        """A site built without deadlines (tests, tools) schedules only twisted.web's
        idle timeout."""
        clock = Clock()
        site = RailSite(_Echo(), max_body=100, idle_timeout=60.0, clock=clock)
        channel: Any = site.buildProtocol(_PEER)
        transport = StringTransport(peerAddress=_PEER)
        channel.makeConnection(transport)
        self.assertEqual([call.getTime() for call in clock.getDelayedCalls()], [60.0])
        channel.connectionLost(Failure(ConnectionError("closed")))
