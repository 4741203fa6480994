"""SMTP sessions when Rail stops, over real loopback sockets through Listener.stopService:
``421 4.3.2`` for idle sessions, the grace period for a transaction under way, then abort
(RFC 5321 §3.8)."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from rail.listener import Listener
from rail.smtp.factory import SMTPServerFactory
from tests.smtp.helpers import LIMITS, ScriptedSession

SHUTTING_DOWN = b"421 4.3.2 Service shutting down; closing connection"


class _Client(protocol.Protocol):
    """Collects reply lines; ``wait_for(n)`` fires once ``n`` lines have arrived."""

    def __init__(self) -> None:
        self.buffer = b""
        self.lines: list[bytes] = []
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._waiting: list[tuple[int, defer.Deferred[list[bytes]]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        *complete, self.buffer = self.buffer.split(b"\r\n")
        self.lines += complete
        for entry in list(self._waiting):
            if len(self.lines) >= entry[0]:
                self._waiting.remove(entry)
                entry[1].callback(self.lines)

    def wait_for(self, count: int) -> defer.Deferred[list[bytes]]:
        d: defer.Deferred[list[bytes]] = defer.Deferred()
        if len(self.lines) >= count:
            d.callback(self.lines)
        else:
            self._waiting.append((count, d))
        return d

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


class ShutdownTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.sessions: list[ScriptedSession] = []

        def new_session() -> ScriptedSession:
            session = ScriptedSession(asynchronous=True)
            self.sessions.append(session)
            return session

        factory = SMTPServerFactory(
            new_session, hostname="mx.rail.test", limits=LIMITS, clock=Clock()
        )
        # The grace period runs on a clock the test advances: no waiting on wall time.
        self.grace_clock = Clock()
        self.listener = Listener(
            TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
            factory,
            self.grace_clock,
            grace=10.0,
        )
        self.listener.setName("inbound")
        self.listener.startService()
        assert self.listener.port is not None
        self.port = self.listener.port.getHost().port

    async def connect(self) -> _Client:
        client = _Client()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), client)
        await client.wait_for(1)
        client.send(b"EHLO client.example\r\n")
        await client.wait_for(7)
        return client

    async def test_idle_421_and_transaction_finishes(self) -> None:
        """At stop, an idle session gets 421 4.3.2 and is closed at once; a session in
        DATA sends the rest of its message, gets its 250 once stored, then 421, and the
        listener's stop completes when it is closed, within the grace period."""
        idle = await self.connect()
        busy = await self.connect()
        busy.send(b"MAIL FROM:<a@rail.test>\r\n")
        await self._fire_when_asked()
        busy.send(b"RCPT TO:<b@c.example>\r\n")
        await self._fire_when_asked()
        busy.send(b"DATA\r\nSubject: x\r\n\r\nfirst half\r\n")
        await busy.wait_for(10)
        stopped = self.listener.stopService()
        await idle.closed
        self.assertEqual(idle.lines[-1], SHUTTING_DOWN)
        self.assertNoResult(stopped)
        busy.send(b"second half\r\n.\r\n")
        await self._fire_when_asked()
        await busy.closed
        self.assertEqual(busy.lines[-2:], [b"250 2.0.0 Ok: queued as X", SHUTTING_DOWN])
        await stopped
        self.assertEqual(
            self.sessions[1].delivered[0][1], b"Subject: x\r\n\r\nfirst half\r\nsecond half\r\n"
        )
        self.assertEqual(self.grace_clock.getDelayedCalls(), [])

    async def test_after_grace_everything_is_aborted(self) -> None:
        """A transaction still under way when the grace period ends is cut off, and the
        listener's stop completes."""
        busy = await self.connect()
        busy.send(b"MAIL FROM:<a@rail.test>\r\n")
        await self._fire_when_asked()
        busy.send(b"RCPT TO:<b@c.example>\r\n")
        await self._fire_when_asked()
        busy.send(b"DATA\r\nnever finished\r\n")
        await busy.wait_for(10)
        stopped = self.listener.stopService()
        # The listener stops accepting first, then starts the grace period.
        while not self.grace_clock.getDelayedCalls():
            await _turn()
        self.grace_clock.advance(9.9)
        await _turn()
        self.assertFalse(busy.closed.called)
        self.grace_clock.advance(0.1)
        await busy.closed
        await stopped
        self.assertEqual(busy.lines[-1][:3], b"354")
        self.assertEqual(self.sessions[0].delivered, [])

    async def _fire_when_asked(self) -> None:
        """Answer the session's pending question once it has been asked."""
        for _ in range(500):
            pending = [s for s in self.sessions if s.pending]
            if pending:
                for session in pending:
                    session.fire_all()
                return
            await _turn()
        self.fail("the session was never asked")


def _turn() -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(0, d.callback, None)  # type: ignore[attr-defined]
    return d
