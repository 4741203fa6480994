"""Webhook POSTs over kept-alive connections (:mod:`rail.webhooks.http`) on real sockets.

Servers listen on 127.0.0.1 in the test's reactor: a twisted.web Site answering 200, or a
raw protocol each test scripts. Every server is wrapped so the test can count the TCP
connections it accepted and wait for each one's ``connectionLost``; the client's
connections are recorded by the endpoint that made them. Nothing waits on wall time: each
step waits on a Deferred, bounded by trial's ``timeout``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectingCancelledError, ConnectionDone
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from rail.webhooks.http import HTTPPool, RequestFailedError, _Connection, request_bytes
from rail.webhooks.response import HTTPResponse, ResponseError

_WAIT = 10
"""Seconds of real time any test may take (trial's timeout; also the connect timeout)."""

_OK = HTTPResponse(code=200, retry_after=None, reusable=True)


class RequestBytesTests(SynchronousTestCase):
    def test_exact_bytes(self) -> None:
        """The request line, Host, Content-Length, the fields in order, a blank line and
        the body, all CRLF-separated."""
        data = request_bytes(
            "/hook?x=1",
            "hooks.example.com:8080",
            [("Content-Type", "application/json"), ("webhook-id", "msg_1")],
            b'{"a":1}',
        )
        self.assertEqual(
            data,
            b"POST /hook?x=1 HTTP/1.1\r\n"
            b"Host: hooks.example.com:8080\r\n"
            b"Content-Length: 7\r\n"
            b"Content-Type: application/json\r\n"
            b"webhook-id: msg_1\r\n"
            b"\r\n"
            b'{"a":1}',
        )

    def test_empty_body_and_no_fields(self) -> None:
        """An empty body is announced as Content-Length 0 (the server must not wait)."""
        self.assertEqual(
            request_bytes("/", "h", [], b""),
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
        )

    def test_refuses_cr_lf_nul(self) -> None:
        """CR, LF or NUL anywhere in the target, host, a field name or a field value
        would let a value inject fields or a second request: ValueError instead."""
        for bad in ("\r", "\n", "\0", "\r\n"):
            cases: list[tuple[str, str, list[tuple[str, str]]]] = [
                (f"/hook{bad}x", "h", []),
                ("/hook", f"h{bad}", []),
                ("/hook", "h", [(f"X-A{bad}", "v")]),
                ("/hook", "h", [("X-A", f"v{bad}X-B: w")]),
                ("/hook", "h", [("X-A", "v"), ("X-B", bad)]),
            ]
            for target, host, fields in cases:
                with self.assertRaises(ValueError, msg=repr((target, host, fields))):
                    request_bytes(target, host, fields, b"body")

    def test_body_may_hold_anything(self) -> None:
        """Only the head is checked: the body is sent as it is, NUL and CRLF included."""
        body = b"\r\n\0\r\n\r\nPOST / HTTP/1.1\r\n"
        self.assertTrue(request_bytes("/", "h", [], body).endswith(b"\r\n\r\n" + body))


class _Tracking(WrappingFactory):
    """Wraps a server factory: records every connection it accepts and lets a test wait
    for one's ``connectionLost``."""

    noisy = False

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self.accepted: list[ProtocolWrapper] = []
        self._waiting: dict[ProtocolWrapper, list[Deferred[None]]] = {}

    def registerProtocol(self, p: ProtocolWrapper) -> None:
        super().registerProtocol(p)
        self.accepted.append(p)
        self._waiting[p] = []

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        super().unregisterProtocol(p)
        for done in self._waiting.pop(p):
            done.callback(None)

    def when_lost(self, index: int) -> Deferred[None]:
        """Fires once the ``index``-th accepted connection is lost (the server saw it
        close)."""
        p = self.accepted[index]
        if p not in self.protocols:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._waiting[p].append(done)
        return done

    def open(self) -> list[int]:
        """Which accepted connections are still open, by index."""
        return [i for i, p in enumerate(self.accepted) if p in self.protocols]


@implementer(IStreamClientEndpoint)
class _Recording:
    """A real TCP endpoint to 127.0.0.1 that keeps the client connections it made;
    ``on_connect`` sees each before the pool sends anything on it."""

    def __init__(self, port: int) -> None:
        self._endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=_WAIT)
        self.connections: list[_Connection] = []
        self.on_connect: Callable[[_Connection], None] = lambda connection: None

    def connect(self, factory: Any) -> Deferred[Any]:
        return self._endpoint.connect(factory).addCallback(self._connected)

    def _connected(self, connection: Any) -> _Connection:
        assert isinstance(connection, _Connection)
        self.connections.append(connection)
        self.on_connect(connection)
        return connection


class _Raw(Protocol):
    """A scripted server connection: reads requests (framed by their Content-Length) and
    calls ``answer(self)`` for each complete one."""

    def __init__(self, answer: Callable[[_Raw], None]) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self._buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            length = re.search(rb"\r\nContent-Length: (\d+)\r\n", self._buffer[: end + 2])
            assert length is not None, self._buffer
            total = end + 4 + int(length.group(1))
            if len(self._buffer) < total:
                return
            request, self._buffer = self._buffer[:total], self._buffer[total:]
            self.requests.append(request)
            self.answer(self)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


class _RawFactory(Factory):
    noisy = False

    def __init__(self, answer: Callable[[_Raw], None]) -> None:
        self.answer = answer
        self.built: list[_Raw] = []

    def buildProtocol(self, addr: Any) -> _Raw:
        protocol = _Raw(self.answer)
        protocol.factory = self
        self.built.append(protocol)
        return protocol


class _Hook(Resource):
    """Answers every POST with 200 and a short body, as a webhook receiver would."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        self.bodies.append(request.content.read())
        return b"thanks\n"


def _request(body: bytes = b'{"n":1}') -> bytes:
    return request_bytes("/hook", "127.0.0.1", [("Content-Type", "application/json")], body)


class _Harness(TestCase):
    timeout = _WAIT

    def listen(self, factory: Any) -> tuple[_Tracking, _Recording]:
        """Serve ``factory`` on 127.0.0.1; the cleanup stops listening, cuts whatever is
        still connected on both sides and waits until every connection is lost, so the
        reactor is left clean."""
        tracking = _Tracking(factory)
        serving: Any = tracking
        port = reactor.listenTCP(0, serving, interface="127.0.0.1")
        endpoint = _Recording(port.getHost().port)  # type: ignore[attr-defined]

        async def stop() -> None:
            await maybeDeferred(port.stopListening)
            lost: list[Deferred[None]] = []
            for index in tracking.open():
                lost.append(tracking.when_lost(index))
                accepted: Any = tracking.accepted[index].transport
                accepted.abortConnection()
            for connection in endpoint.connections:
                lost.append(connection.when_lost())
                if not connection.lost:
                    made: Any = connection.transport
                    made.abortConnection()
            await DeferredList(lost)

        self.addCleanup(stop)
        return tracking, endpoint

    def site(self) -> tuple[_Hook, _Tracking, _Recording]:
        hook = _Hook()
        site = Site(hook)
        site.noisy = False
        tracking, endpoint = self.listen(site)
        return hook, tracking, endpoint

    def raw(self, answer: Callable[[_Raw], None]) -> tuple[_RawFactory, _Tracking, _Recording]:
        factory = _RawFactory(answer)
        tracking, endpoint = self.listen(factory)
        return factory, tracking, endpoint

    def pool(
        self,
        clock: Any = reactor,
        *,
        idle_per_key: int = 1,
        idle_timeout: float = 60.0,
        max_body: int = 1024,
    ) -> HTTPPool:
        pool = HTTPPool(
            clock, idle_per_key=idle_per_key, idle_timeout=idle_timeout, max_body=max_body
        )
        self.addCleanup(pool.close)
        return pool

    async def failed(self, answer: Deferred[HTTPResponse]) -> RequestFailedError:
        """The RequestFailedError ``answer`` fails with."""
        try:
            response = await answer
        except RequestFailedError as e:
            return e
        self.fail(f"answered: {response!r}")


def _answer(*responses: bytes) -> Callable[[_Raw], None]:
    """Answers the n-th request on each connection with ``responses[n]`` (the last one
    repeats), in one write."""

    def answer(server: _Raw) -> None:
        server.write(responses[min(len(server.requests), len(responses)) - 1])

    return answer


_200 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class SiteTests(_Harness):
    async def test_kept_alive_connection_reused(self) -> None:
        """With ``idle_per_key=1`` two POSTs in turn share one TCP connection, the whole
        point of the pool; closing the pool closes it (the server sees it go)."""
        hook, server, endpoint = self.site()
        pool = self.pool(idle_per_key=1)
        first = await pool.request("k", endpoint, _request(b'{"n":1}'))
        second = await pool.request("k", endpoint, _request(b'{"n":2}'))
        self.assertEqual((first, second), (_OK, _OK))
        self.assertEqual(hook.bodies, [b'{"n":1}', b'{"n":2}'])
        self.assertEqual(len(server.accepted), 1)
        self.assertEqual(len(endpoint.connections), 1)
        self.assertEqual(server.open(), [0])
        await pool.close()
        await server.when_lost(0)
        self.assertEqual(server.open(), [])

    async def test_keys_do_not_share_connections(self) -> None:
        """A connection kept for one key never carries another key's POST (keys are the
        checked address: sharing would bypass the check)."""
        hook, server, endpoint = self.site()
        pool = self.pool(idle_per_key=1)
        await pool.request("a", endpoint, _request())
        await pool.request("b", endpoint, _request())
        await pool.request("a", endpoint, _request())
        self.assertEqual(len(server.accepted), 2)
        self.assertEqual(len(hook.bodies), 3)

    async def test_no_idle_connections(self) -> None:
        """With ``idle_per_key=0`` every POST opens its own connection and the client
        closes it once answered: the server sees each one close."""
        hook, server, endpoint = self.site()
        pool = self.pool(idle_per_key=0)
        self.assertEqual(await pool.request("k", endpoint, _request()), _OK)
        await server.when_lost(0)
        self.assertEqual(await pool.request("k", endpoint, _request()), _OK)
        await server.when_lost(1)
        self.assertEqual(len(server.accepted), 2)
        self.assertEqual(len(hook.bodies), 2)
        await DeferredList([c.when_lost() for c in endpoint.connections])


class RawServerTests(_Harness):
    async def test_answer_in_pieces(self) -> None:
        """An answer that arrives in several reads (split inside the status line, a
        field and the body) is put together: the client really gets four reads."""
        pieces = [
            b"HTTP/1.1 503 Ser",
            b"vice Unavailable\r\nRetry-After: 7\r\nContent-Len",
            b"gth: 5\r\n\r\nhel",
            b"lo",
        ]
        factory, server, endpoint = self.raw(lambda s: s.write(pieces[0]))
        reads: list[bytes] = []

        def hook(connection: _Connection) -> None:
            # The server writes each next piece only after the client has read the last,
            # so TCP cannot merge them.
            received = connection.dataReceived

            def read(data: bytes) -> None:
                reads.append(data)
                received(data)
                if len(reads) < len(pieces):
                    factory.built[0].write(pieces[len(reads)])

            connection.dataReceived = read  # type: ignore[method-assign]

        endpoint.on_connect = hook
        pool = self.pool()
        answer = await pool.request("k", endpoint, _request())
        self.assertEqual(answer, HTTPResponse(code=503, retry_after="7", reusable=True))
        self.assertEqual(reads, pieces)

    async def test_chunked_answer_then_reuse(self) -> None:
        """A chunked answer (extension, trailer) is read to its end and the connection
        then carries the next POST."""
        chunked = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-Checksum: abc\r\n\r\n"
        )
        factory, server, endpoint = self.raw(_answer(chunked))
        pool = self.pool()
        self.assertEqual(await pool.request("k", endpoint, _request()), _OK)
        self.assertEqual(await pool.request("k", endpoint, _request()), _OK)
        self.assertEqual(len(server.accepted), 1)
        self.assertEqual(len(factory.built[0].requests), 2)

    async def test_connection_close_answer_then_new_connection(self) -> None:
        """An answer with ``Connection: close`` followed by the server closing is an
        answer (not a failure), and the next POST opens a new connection."""
        closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"

        def answer(server: _Raw) -> None:
            server.write(closing)
            server.close()

        factory, server, endpoint = self.raw(answer)
        pool = self.pool()
        first = await pool.request("k", endpoint, _request())
        second = await pool.request("k", endpoint, _request())
        self.assertEqual(first, HTTPResponse(code=200, retry_after=None, reusable=False))
        self.assertEqual(second, first)
        self.assertEqual(len(server.accepted), 2)
        self.assertEqual([len(f.requests) for f in factory.built], [1, 1])

    async def test_answer_until_close(self) -> None:
        """An answer without a length ends when the server closes: an answer, not a
        failure, and the connection is not reused."""

        def answer(server: _Raw) -> None:
            server.write(b"HTTP/1.1 202 Accepted\r\n\r\nqueued")
            server.close()

        factory, server, endpoint = self.raw(answer)
        pool = self.pool()
        first = await pool.request("k", endpoint, _request())
        self.assertEqual(first, HTTPResponse(code=202, retry_after=None, reusable=False))
        await pool.request("k", endpoint, _request())
        self.assertEqual(len(server.accepted), 2)

    async def test_closed_before_answering(self) -> None:
        """A server that closes without answering fails the POST with
        RequestFailedError carrying the connection's Failure (the request is not sent
        again: the dispatcher retries later)."""
        factory, server, endpoint = self.raw(lambda s: s.close())
        pool = self.pool()
        failure = await self.failed(pool.request("k", endpoint, _request()))
        self.assertEqual(len(failure.reasons), 1)
        self.assertIsInstance(failure.reasons[0], Failure)
        self.assertTrue(failure.reasons[0].check(ConnectionDone))
        self.assertEqual(len(factory.built[0].requests), 1)
        self.assertEqual(len(server.accepted), 1)

    async def test_closed_mid_answer(self) -> None:
        """A connection lost in the middle of a Content-Length body is a failure, not
        a short answer."""

        def answer(server: _Raw) -> None:
            server.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
            server.close()

        factory, server, endpoint = self.raw(answer)
        failure = await self.failed(self.pool().request("k", endpoint, _request()))
        self.assertTrue(failure.reasons[0].check(ConnectionDone))

    async def test_garbage_answer(self) -> None:
        """Bytes that are not an HTTP/1.x answer fail the POST with RequestFailedError
        wrapping the ResponseError, and the client cuts the connection."""
        factory, server, endpoint = self.raw(_answer(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"))
        pool = self.pool()
        failure = await self.failed(pool.request("k", endpoint, _request()))
        self.assertEqual(len(failure.reasons), 1)
        self.assertTrue(failure.reasons[0].check(ResponseError))
        self.assertEqual(str(failure.reasons[0].value), "malformed status line")
        await server.when_lost(0)
        await endpoint.connections[0].when_lost()

    async def test_bytes_after_answer_not_reused(self) -> None:
        """A server that sends more than its answer is out of step: the answer counts,
        but the connection is closed rather than kept."""

        def answer(server: _Raw) -> None:
            first = server is factory.built[0]
            server.write(_200 + b"HTTP/1.1 200 OK\r\n" if first else _200)

        factory, server, endpoint = self.raw(answer)
        pool = self.pool()
        response = await pool.request("k", endpoint, _request())
        self.assertEqual(response, HTTPResponse(code=200, retry_after=None, reusable=False))
        await server.when_lost(0)
        self.assertEqual(await pool.request("k", endpoint, _request()), _OK)
        self.assertEqual(len(server.accepted), 2)

    async def test_cancel_mid_request(self) -> None:
        """Cancelling (the dispatcher's timeout) errbacks CancelledError and aborts the
        connection: the server sees it lost, and it is never reused."""
        received: Deferred[None] = Deferred()
        factory, server, endpoint = self.raw(lambda s: received.callback(None))
        pool = self.pool()
        answer = pool.request("k", endpoint, _request())
        await received
        answer.cancel()
        with self.assertRaises(CancelledError):
            await answer
        await server.when_lost(0)
        await endpoint.connections[0].when_lost()
        self.assertTrue(endpoint.connections[0].lost)

    async def test_cancel_while_connecting(self) -> None:
        """Cancelled before the connection is made, the POST fails at once and nothing
        reaches the server."""
        factory, server, endpoint = self.raw(_answer(_200))
        answer = self.pool().request("k", endpoint, _request())
        answer.cancel()
        with self.assertRaises((CancelledError, ConnectingCancelledError)):
            await answer
        self.assertEqual(endpoint.connections, [])
        self.assertEqual([p.requests for p in factory.built], [[]] * len(factory.built))

    async def test_post_racing_server_close_not_resent(self) -> None:
        """A POST sent on a kept connection just as the server closes it (answer and
        close in one turn, no ``Connection: close``) fails with RequestFailedError and
        is not sent again on a new connection: a request is never sent twice."""

        def answer(server: _Raw) -> None:
            server.write(_200)
            server.close()

        factory, server, endpoint = self.raw(answer)
        pool = self.pool()
        self.assertEqual(await pool.request("k", endpoint, _request()), _OK)
        failure = await self.failed(pool.request("k", endpoint, _request()))
        self.assertTrue(failure.reasons[0].check(ConnectionDone))
        self.assertEqual(len(server.accepted), 1)
        self.assertEqual(len(factory.built[0].requests), 1)

    async def test_idle_connection_closed_by_server(self) -> None:
        """An idle connection the server closed is dropped, not used: the next POST
        succeeds on a new connection instead of failing on the dead one."""
        factory, server, endpoint = self.raw(_answer(_200))
        pool = self.pool()
        self.assertEqual(await pool.request("k", endpoint, _request()), _OK)
        factory.built[0].close()
        await endpoint.connections[0].when_lost()
        self.assertEqual(await pool.request("k", endpoint, _request()), _OK)
        self.assertEqual(len(server.accepted), 2)
        self.assertEqual([len(f.requests) for f in factory.built], [1, 1])

    async def test_idle_timeout(self) -> None:
        """An idle connection is closed after ``idle_timeout`` on the pool's clock, not
        before; the next POST then opens a new connection."""
        clock = Clock()
        factory, server, endpoint = self.raw(_answer(_200))
        pool = self.pool(clock, idle_timeout=30.0)
        self.assertEqual(await pool.request("k", endpoint, _request()), _OK)
        self.assertEqual([c.getTime() for c in clock.getDelayedCalls()], [30.0])
        clock.advance(29)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        self.assertEqual(server.open(), [0])
        clock.advance(1)
        await server.when_lost(0)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(await pool.request("k", endpoint, _request()), _OK)
        self.assertEqual(len(server.accepted), 2)

    async def test_reuse_cancels_idle_timer(self) -> None:
        """Taking an idle connection cancels its timer: a connection in use is never
        closed by a stale idle timeout."""
        clock = Clock()
        factory, server, endpoint = self.raw(_answer(_200))
        pool = self.pool(clock, idle_timeout=30.0)
        await pool.request("k", endpoint, _request())
        clock.advance(20)
        await pool.request("k", endpoint, _request())
        self.assertEqual([c.getTime() for c in clock.getDelayedCalls()], [50.0])
        clock.advance(20)
        self.assertEqual(await pool.request("k", endpoint, _request()), _OK)
        self.assertEqual(len(server.accepted), 1)

    async def test_close_closes_idle_connections(self) -> None:
        """``close()`` closes every idle connection and fires only once they are all
        lost, with no idle timer left behind."""
        clock = Clock()
        factory, server, endpoint = self.raw(_answer(_200))
        pool = self.pool(clock, idle_per_key=2)
        answers = await DeferredList(
            [pool.request("k", endpoint, _request()) for _ in range(2)]
            + [pool.request("other", endpoint, _request())],
            fireOnOneErrback=True,
        )
        self.assertEqual([a for _, a in answers], [_OK, _OK, _OK])
        self.assertEqual(len(endpoint.connections), 3)
        self.assertEqual(len(clock.getDelayedCalls()), 3)
        await pool.close()
        self.assertTrue(all(c.lost for c in endpoint.connections))
        self.assertEqual(clock.getDelayedCalls(), [])
        await DeferredList([server.when_lost(i) for i in range(3)])
        self.assertEqual(server.open(), [])

    async def test_idle_per_key_limit(self) -> None:
        """Answered connections beyond ``idle_per_key`` are closed, not kept."""
        factory, server, endpoint = self.raw(_answer(_200))
        pool = self.pool(idle_per_key=1)
        await DeferredList([pool.request("k", endpoint, _request()) for _ in range(2)])
        self.assertEqual(len(server.accepted), 2)
        await DeferredList([c.when_lost() for c in endpoint.connections], fireOnOneCallback=True)
        self.assertEqual([c.lost for c in endpoint.connections].count(True), 1)

    async def test_body_over_max_body(self) -> None:
        """A 64 KiB+ body with ``max_body=1024`` is an answer as soon as 1 KiB has come;
        the connection is closed rather than read to its end, and not reused."""
        body = b"x" * (70 * 1024)
        big = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        factory, server, endpoint = self.raw(_answer(big))
        pool = self.pool(max_body=1024)
        answer = await pool.request("k", endpoint, _request())
        self.assertEqual(answer, HTTPResponse(code=200, retry_after=None, reusable=False))
        await server.when_lost(0)
        await endpoint.connections[0].when_lost()
        await pool.request("k", endpoint, _request())
        self.assertEqual(len(server.accepted), 2)
