"""/metrics in a worker: its own text handed to the gatherer, whose answer is served."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from rail.delivery.stats import DeliveryStats
from rail.testing import MemoryStore
from rail.web.stats import Metrics


class MetricsGatherTests(SynchronousTestCase):
    def test_gathered_answer_is_served(self) -> None:
        """The resource passes its own exposition (queue gauges set) to ``gather`` and
        answers with what that fires with, once it fires."""
        given: list[bytes] = []
        answer: Deferred[bytes] = Deferred()

        def gather(own: bytes) -> Deferred[bytes]:
            given.append(own)
            return answer

        stats = DeliveryStats(0.0)
        resource = Metrics(stats, MemoryStore(Clock()), gather)
        request = DummyRequest([b""])
        resource.render(request)
        self.assertEqual(len(given), 1)
        self.assertIn(b'rail_queue_recipients{status="queued"} 0.0', given[0])
        self.assertEqual(request.written, [])
        answer.callback(b"merged\n")
        self.assertEqual(b"".join(request.written), b"merged\n")
        self.assertTrue(request.finished)

    def test_single_process(self) -> None:
        """Without a gatherer the process's own text is the answer."""
        request: Any = DummyRequest([b""])
        Metrics(DeliveryStats(0.0), MemoryStore(Clock())).render(request)
        self.assertIn(b"rail_queue_recipients", b"".join(request.written))
