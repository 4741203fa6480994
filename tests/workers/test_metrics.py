"""rail.workers.metrics: workers serve their metrics to each other over Unix sockets."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import TestCase

from rail.workers.metrics import Gather, PeerMetrics, peer_path
from rail.workers.plan import WorkerSpec


def _text(sent: int) -> bytes:
    registry = CollectorRegistry()
    Counter("rail_sent", "Sent.", registry=registry).inc(sent)
    return bytes(generate_latest(registry))


def _at_once(f: Any, *args: Any) -> Any:
    return succeed(f(*args))


class _Silent(Protocol):
    """A peer that accepts and never answers."""


class GatherTests(TestCase):
    def setUp(self) -> None:
        # trial's working directory may be too deep for a socket path (sun_path).
        self.peers = tempfile.mkdtemp(prefix="rail-peers-")
        self.addCleanup(shutil.rmtree, self.peers, True)

    def serve(self, index: int, text: bytes) -> None:
        peer = PeerMetrics(reactor, peer_path(self.peers, index), lambda: text)
        peer.startService()
        self.addCleanup(peer.stopService)

    def gather(self, index: int, count: int, timeout: float = 5.0) -> Gather:
        spec = WorkerSpec(index=index, count=count, peers=self.peers)
        return Gather(reactor, spec, _at_once, timeout=timeout)

    @inlineCallbacks
    def test_every_worker_in_one_answer(self) -> Any:
        """The answering worker's text and each peer's come back merged, per worker."""
        self.serve(1, _text(5))
        self.serve(2, _text(7))
        merged = yield self.gather(0, 3)(_text(3))
        values = {
            sample.labels.get("worker"): sample.value
            for family in text_string_to_metric_families(merged.decode())
            if family.name == "rail_sent"
            for sample in family.samples
            if sample.name == "rail_sent_total"
        }
        self.assertEqual(values, {"0": 3.0, "1": 5.0, "2": 7.0})

    @inlineCallbacks
    def test_absent_worker(self) -> Any:
        """A worker with no socket (being restarted) is reported down, not an error."""
        self.serve(0, _text(1))
        merged = yield self.gather(1, 3)(_text(2))
        self.assertIn(b'rail_worker_up{worker="2"} 0.0', merged)
        self.assertIn(b'rail_worker_up{worker="0"} 1.0', merged)

    @inlineCallbacks
    def test_silent_worker(self) -> Any:
        """A peer that accepts and never finishes is cut off after the timeout and
        reported down; what it may have sent is not used."""
        port = reactor.listenUNIX(str(peer_path(self.peers, 1)), Factory.forProtocol(_Silent))
        self.addCleanup(port.stopListening)
        merged = yield self.gather(0, 2, timeout=0.2)(_text(2))
        self.assertIn(b'rail_worker_up{worker="1"} 0.0', merged)

    @inlineCallbacks
    def test_directory_gone(self) -> Any:
        """A peers directory cleaned away during a long run is made again."""
        shutil.rmtree(self.peers)
        self.serve(1, _text(4))
        merged = yield self.gather(0, 2)(_text(2))
        self.assertIn(b'rail_worker_up{worker="1"} 1.0', merged)

    def test_cannot_serve(self) -> None:
        """A socket that cannot be made is logged; the worker runs on without it."""
        blocked = Path(self.peers) / "file"
        blocked.write_bytes(b"")
        peer = PeerMetrics(reactor, blocked / "1.sock", lambda: b"")
        with capturedLogs() as events:
            peer.startService()
        self.addCleanup(peer.stopService)
        self.assertTrue(peer.running)
        (event,) = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertIn("cannot serve this worker's metrics", event["log_format"])

    @inlineCallbacks
    def test_stale_socket_replaced(self) -> Any:
        """A socket file left by a worker that died is replaced when it starts again."""
        path = peer_path(self.peers, 1)
        path.write_bytes(b"")
        self.serve(1, _text(4))
        merged = yield self.gather(0, 2)(_text(2))
        self.assertIn(b'rail_worker_up{worker="1"} 1.0', merged)
