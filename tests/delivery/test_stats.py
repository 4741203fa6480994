"""Delivery figures behind /stats and /metrics, and the two resources that serve them."""

from __future__ import annotations

import json

from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from rail.delivery.stats import DeliveryStats, percentile
from rail.store.model import DeliveryJob, DueRecipient, JobResult, NewMessage, RecipientUpdate
from rail.store.suppressions import Suppression
from rail.testing import MemoryStore
from rail.web.stats import Metrics, Stats

_T0 = 1_800_000_000.0


def _job(received_at: float) -> DeliveryJob:
    return DeliveryJob(
        message_id="M",
        domain="x.example",
        client="app",
        sender="a@rail.test",
        received_at=received_at,
        smtputf8=False,
        eight_bit=False,
        recipients=(DueRecipient(0, "b@x.example", 0, None),),
        data=b"",
    )


def _sent(at: float, status: str = "sent") -> JobResult:
    return JobResult("M", at, (RecipientUpdate(0, status, "250 ok"),))  # type: ignore[arg-type]


class DeliveryStatsTests(SynchronousTestCase):
    def test_rates_and_latency(self) -> None:
        """Sent recipients count in the 1 m and 5 m windows until they age out; latency
        percentiles are accept-to-sent, nearest rank."""
        stats = DeliveryStats(_T0)
        for i in range(10):
            stats.attempt(_job(_T0), _sent(_T0 + 1 + i), 0.01)
        stats.attempt(_job(_T0), _sent(_T0 + 11, "deferred"), 0.01)
        snap = stats.snapshot(_T0 + 30, {"sent": 10, "deferred": 1})
        self.assertEqual(snap["delivered_per_minute"], {"1m": 10.0, "5m": 2.0})
        self.assertEqual(snap["results_since_start"], {"sent": 10, "deferred": 1, "bounced": 0})
        self.assertEqual(snap["accept_to_sent_seconds"]["p50"], 5.0)
        self.assertEqual(snap["accept_to_sent_seconds"]["p99"], 10.0)
        self.assertEqual(snap["recipients"]["queued"], 0)
        self.assertEqual(stats.rate(_T0 + 90, 60), 0.0)
        self.assertEqual(stats.rate(_T0 + 400, 300), 0.0)

    def test_recent_series(self) -> None:
        """The console's series: sent recipients per second for five minutes and per
        minute for a day, oldest first; older ones age out."""
        stats = DeliveryStats(_T0)
        start = _T0 - _T0 % 60
        stats.attempt(_job(start), _sent(start + 1), 0.01)
        stats.attempt(_job(start), _sent(start + 1), 0.01)
        stats.attempt(_job(start), _sent(start + 61), 0.01)
        self.assertEqual(stats.recent_sent(start + 62), [(int(start) + 1, 2), (int(start) + 61, 1)])
        self.assertEqual(stats.sent_per_minute(start + 62), [(int(start), 2), (int(start) + 60, 1)])
        self.assertEqual(stats.recent_sent(start + 400), [])
        self.assertEqual(stats.sent_per_minute(start + 86_400 + 30), [(int(start) + 60, 1)])
        stats.attempt(_job(start), _sent(start + 86_400 * 2), 0.01)
        self.assertEqual(stats.sent_per_minute(start + 86_400 * 2), [(int(start) + 172_800, 1)])

    def test_latency_figures_recomputed_at_most_once_a_second(self) -> None:
        """The latency percentiles are cached: samples added within a second of the last
        computation show at the first /stats a second or more later."""
        stats = DeliveryStats(_T0)
        stats.attempt(_job(_T0), _sent(_T0 + 1), 0.01)
        self.assertEqual(stats.snapshot(_T0 + 2, {})["accept_to_sent_seconds"]["samples"], 1)
        stats.attempt(_job(_T0), _sent(_T0 + 9), 0.01)
        self.assertEqual(stats.snapshot(_T0 + 2.5, {})["accept_to_sent_seconds"]["samples"], 1)
        figures = stats.snapshot(_T0 + 3, {})["accept_to_sent_seconds"]
        self.assertEqual((figures["samples"], figures["p99"]), (2, 9.0))

    def test_sections(self) -> None:
        """A section added with add_section appears in every /stats document, read anew
        each time."""
        stats = DeliveryStats(_T0)
        reads = iter([{"max": 0.5}, {"max": 0.25}])
        stats.add_section("reactor_lag_seconds", lambda: next(reads))
        self.assertEqual(stats.snapshot(_T0, {})["reactor_lag_seconds"], {"max": 0.5})
        self.assertEqual(stats.snapshot(_T0, {})["reactor_lag_seconds"], {"max": 0.25})

    def test_percentile(self) -> None:
        """Nearest rank; None without samples."""
        self.assertIsNone(percentile([], 0.5))
        self.assertEqual(percentile([1.0, 2.0, 3.0, 4.0], 0.5), 2.0)
        self.assertEqual(percentile([1.0, 2.0, 3.0, 4.0], 0.99), 4.0)


class ResourceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(_T0 + 60)
        self.store = MemoryStore(self.clock)
        self.store.accept(
            NewMessage("M1", "app", "a@rail.test", ("b@x.example",), b"x", "api", _T0)
        )
        self.stats = DeliveryStats(_T0)
        self.stats.attempt(_job(_T0), _sent(_T0 + 2), 0.2)
        self.stats.connection("x.example", tls=True)

    def _get(self, resource: object) -> DummyRequest:
        request = DummyRequest([])
        request.method = b"GET"
        resource.render(request)  # type: ignore[attr-defined]
        self.assertTrue(request.finished)
        return request

    def test_stats_json(self) -> None:
        """/stats reads the queue counts from the store and answers JSON."""
        request = self._get(Stats(self.stats, self.store, self.clock))
        document = json.loads(b"".join(request.written))
        self.assertEqual(document["uptime_seconds"], 60.0)
        self.assertEqual(document["recipients"]["queued"], 1)
        self.assertEqual(document["accept_to_sent_seconds"]["samples"], 1)

    def test_metrics_text(self) -> None:
        """/metrics is Prometheus text with queue depth, results, attempts and TLS use."""
        request = self._get(Metrics(self.stats, self.store))
        text = b"".join(request.written).decode()
        self.assertIn('rail_queue_recipients{status="queued"} 1.0', text)
        self.assertIn('rail_delivery_results_total{result="sent"} 1.0', text)
        self.assertIn("rail_delivery_attempt_seconds_count 1.0", text)
        self.assertIn('rail_outbound_connections_total{tls="yes"} 1.0', text)
        self.assertIn(b"text/plain", request.responseHeaders.getRawHeaders(b"content-type")[0])

    def test_failed_counted(self) -> None:
        """Quarantined (``failed``) recipients appear in /stats and /metrics."""
        self.store.accept(
            NewMessage("M2", "app", "a@rail.test", ("c@x.example",), b"y", "api", _T0)
        )
        self.store.quarantine("M2", "corrupt", "stored data is truncated", _T0 + 1)
        document = json.loads(
            b"".join(self._get(Stats(self.stats, self.store, self.clock)).written)
        )
        self.assertEqual(
            (document["recipients"]["failed"], document["recipients"]["queued"]), (1, 1)
        )
        text = b"".join(self._get(Metrics(self.stats, self.store)).written).decode()
        self.assertIn('rail_queue_recipients{status="failed"} 1.0', text)

    def test_suppressed_not_counted(self) -> None:
        """A recipient found on the suppression list at acceptance is not in /stats nor
        /metrics, which count what delivery handles (the SQLite store's tally never sees
        it: it is not in the recipients table), and it does not break the count."""
        self.store.suppressions[("app", "c@x.example")] = Suppression(
            client="app",
            address="c@x.example",
            reason="manual",
            source="api",
            message_id=None,
            detail=None,
            created_at=_T0,
        )
        self.store.accept(
            NewMessage("M2", "app", "a@rail.test", ("c@x.example", "d@x.example"), b"y", "api", _T0)
        )
        document = json.loads(
            b"".join(self._get(Stats(self.stats, self.store, self.clock)).written)
        )
        self.assertEqual(document["recipients"]["queued"], 2)
        self.assertNotIn("suppressed", document["recipients"])
        text = b"".join(self._get(Metrics(self.stats, self.store)).written).decode()
        self.assertNotIn('status="suppressed"', text)

    def test_store_unavailable(self) -> None:
        """When the store cannot count, both answer 503 QUEUE_UNAVAILABLE."""
        self.store.recipient_counts = lambda: fail(RuntimeError("down"))  # type: ignore[method-assign]
        request = self._get(Stats(self.stats, self.store, self.clock))
        self.assertEqual(request.responseCode, 503)
        self.assertIn(b"QUEUE_UNAVAILABLE", b"".join(request.written))


class AcceptedTests(SynchronousTestCase):
    def test_accepted_in_stats_and_series(self) -> None:
        """Accepted messages are counted apart from delivered recipients: /stats has
        their 1 m and 5 m rates and the count since start, the console their per-minute
        series for a day."""
        clock = Clock()
        clock.advance(_T0 - _T0 % 60)
        start = clock.seconds()
        stats = DeliveryStats(start)
        stats.accepted(clock.seconds())
        clock.advance(61)
        stats.accepted(clock.seconds(), 2)
        stats.attempt(_job(start), _sent(clock.seconds()), 0.01)
        snap = stats.snapshot(clock.seconds(), {})
        self.assertEqual(snap["accepted_per_minute"], {"1m": 2.0, "5m": 0.6})
        self.assertEqual(snap["accepted_since_start"], 3)
        self.assertEqual(snap["delivered_per_minute"], {"1m": 1.0, "5m": 0.2})
        self.assertEqual(
            stats.accepted_per_minute(clock.seconds()), [(int(start), 1), (int(start) + 60, 2)]
        )
        self.assertEqual(stats.sent_per_minute(clock.seconds()), [(int(start) + 60, 1)])
