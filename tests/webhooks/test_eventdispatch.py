"""The event dispatcher on a Clock, against a small IEventStore and scripted POSTs: limits
per client, waking, quarantine; and the figures /stats and /metrics show of events."""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from rail.delivery.stats import DeliveryStats
from rail.events.jobs import EventJob, EventResult, IEventStore
from rail.events.model import EVENT_TYPES
from rail.events.subscriptions import Subscription, Subscriptions
from rail.web.stats import Metrics, Stats
from rail.webhooks import eventdispatch
from rail.webhooks.dispatcher import WebhookLimits
from rail.webhooks.eventdispatch import EventDispatcher
from rail.webhooks.eventstats import EventStats
from rail.webhooks.key import WebhookKey
from rail.webhooks.outcome import Answered, Attempt, WebhookPolicy
from tests.webhooks.helpers import MidRandom

T0 = 1774699200.0


@implementer(IEventStore)
class _Events:
    """Event rows in a dict, answered at once."""

    def __init__(self) -> None:
        self.subscriptions = Subscriptions(
            {
                "a": Subscription(frozenset(EVENT_TYPES)),
                "b": Subscription(frozenset(EVENT_TYPES), "https://b.example/events"),
            }
        )
        self.rows: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, EventJob] = {}
        self.observers: list[Any] = []

    def add(self, event_id: str, client: str) -> None:
        self.jobs[event_id] = EventJob(
            id=event_id,
            client=client,
            type="message.delivered",
            message_id="M",
            recipient="r@x",
            sandbox=False,
            created_at=T0,
            details={},
            attempts=0,
        )
        self.rows[event_id] = {"status": "queued", "next": T0, "reply": None}
        for observer in self.observers:
            observer()

    def claim_events(self, now: float, limit: int, exclude: frozenset[str]) -> Deferred[Any]:
        due = [
            job
            for event_id, job in self.jobs.items()
            if self.rows[event_id]["status"] in ("queued", "deferred")
            and self.rows[event_id]["next"] <= now
            and event_id not in exclude
        ]
        return succeed(due[:limit])

    def record_event(self, result: EventResult) -> Deferred[Any]:
        row = self.rows[result.event_id]
        row.update(status=result.status, next=result.next_attempt_at, reply=result.reply)
        return succeed(True)

    def quarantine_event(self, event_id: str, kind: Any, reason: str, now: float) -> Deferred[Any]:
        self.rows[event_id].update(status="failed", next=None, reply="quarantined: " + reason)
        return succeed(True)

    def event_counts(self) -> Deferred[Any]:
        return succeed({})

    def observe_events(self, callback: Any) -> None:
        self.observers.append(callback)


class EventDispatcherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = _Events()
        self.posts: list[tuple[str, dict[str, str], Deferred[Attempt]]] = []
        self.registry = CollectorRegistry()
        self.stats = EventStats(self.registry)

    def post(self, url: str, headers: dict[str, str], body: bytes) -> Deferred[Attempt]:
        answer: Deferred[Attempt] = Deferred()
        self.posts.append((url, headers, answer))
        return answer

    def dispatcher(self, per_url: int = 2) -> EventDispatcher:
        dispatcher = EventDispatcher(
            self.store,
            self.clock,
            post=self.post,
            key=WebhookKey(ed25519.Ed25519PrivateKey.generate()),
            policy=WebhookPolicy(schedule=(30.0,), max_age=3600.0),
            limits=WebhookLimits(per_url=per_url),
            timeout=30.0,
            rng=MidRandom(),
            webhook_url={"a": "https://a.example/hook"}.get,
            observer=self.stats,
        )
        dispatcher.start()
        return dispatcher

    def test_fake_store_provides_the_interface(self) -> None:
        """The test's store is checked against IEventStore."""
        self.assertTrue(verifyObject(IEventStore, self.store))

    def test_per_client_limit_and_urls(self) -> None:
        """Stored events start at once (the store wakes the dispatcher); at most
        ``per_url`` POSTs run per client, each client to its own URL (the subscription's
        when set, else the certificate's); a 2xx frees a place for the next."""
        dispatcher = self.dispatcher(per_url=2)
        for n in range(3):
            self.store.add(f"A{n}", "a")
        self.store.add("B0", "b")
        urls = sorted(url for url, _, _ in self.posts)
        self.assertEqual(
            urls, ["https://a.example/hook", "https://a.example/hook", "https://b.example/events"]
        )
        self.assertEqual([h["webhook-id"] for _, h, _ in self.posts], ["A0", "A1", "B0"])
        self.posts[0][2].callback(Answered(200))
        self.assertEqual(self.store.rows["A0"]["status"], "delivered")
        self.assertEqual(self.posts[-1][1]["webhook-id"], "A2")
        for _, _, answer in self.posts[1:]:
            answer.callback(Answered(503))
        self.assertEqual(
            {k: (r["status"], r["next"]) for k, r in self.store.rows.items() if k != "A0"},
            {
                "A1": ("deferred", T0 + 30),
                "A2": ("deferred", T0 + 30),
                "B0": ("deferred", T0 + 30),
            },
        )
        self.assertEqual(dispatcher.in_flight, 0)
        self.assertEqual(
            self.stats.summary()["results_since_start"],
            {"delivered": 1, "deferred": 3, "failed": 0},
        )
        self.assertEqual(
            self.registry.get_sample_value(
                "rail_events_total", {"type": "message.delivered", "status": "deferred"}
            ),
            3.0,
        )
        self.successResultOf(dispatcher.stop(0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unbuildable_payload_quarantined(self) -> None:
        """An event whose payload cannot be built is quarantined: failed for good with
        the reason, never POSTed, one event.final line."""

        def broken(job: EventJob) -> bytes:
            raise ValueError("cannot encode")

        self.patch(eventdispatch, "event_body", broken)
        dispatcher = self.dispatcher()
        with capturedLogs() as logged:
            self.store.add("A0", "a")
        self.assertEqual(self.posts, [])
        self.assertEqual(
            self.store.rows["A0"],
            {
                "status": "failed",
                "next": None,
                "reply": "quarantined: preparing the event failed (ValueError)",
            },
        )
        [final] = [e for e in logged if e.get("rail_event")]
        self.assertEqual((final["rail_event"], final["result"]), ("event.final", "failed"))
        self.assertEqual(dispatcher.in_flight, 0)
        self.successResultOf(dispatcher.stop(0))

    def test_reconfigured_timeout_applies_to_new_posts(self) -> None:
        """After a reload with a 5 s timeout, a new POST that gets no answer is cut
        after 5 s and deferred as a timeout."""
        dispatcher = self.dispatcher()
        dispatcher.reconfigure(
            WebhookPolicy(schedule=(30.0,), max_age=3600.0), WebhookLimits(per_url=2), 5.0
        )
        self.store.add("A0", "a")
        self.clock.advance(5)
        self.assertEqual(
            self.store.rows["A0"],
            {"status": "deferred", "next": T0 + 35, "reply": "timeout after 5s"},
        )
        self.successResultOf(dispatcher.stop(0))


class _Queue:
    """Recipient counts for the /stats resources."""

    def recipient_counts(self) -> Deferred[dict[str, int]]:
        return succeed({"queued": 1})


class EventFiguresTests(SynchronousTestCase):
    def render(self, page: Any) -> bytes:
        request = DummyRequest([b""])
        page.render_GET(request)
        self.assertEqual(request.finished, 1)
        return b"".join(request.written)

    def test_stats_and_metrics_show_event_jobs_read_at_request_time(self) -> None:
        """/stats and /metrics read the event jobs by status from the store at request
        time (a refresher) and show them with the POST outcomes and latencies."""
        clock = Clock()
        clock.advance(T0)
        stats = DeliveryStats(T0)
        events = EventStats(stats.registry)
        stats.add_section("events", events.summary)
        counts = {"queued": 3, "deferred": 1, "delivered": 7, "failed": 2}
        stats.add_refresh(lambda: succeed(counts).addCallback(events.set_jobs))
        job = _Events()
        job.add("A0", "a")
        events.attempt(
            job.jobs["A0"], EventResult("A0", T0 + 0.25, "delivered", "HTTP 200 OK"), 0.1
        )
        document = json.loads(self.render(Stats(stats, _Queue(), clock)))  # type: ignore[arg-type]
        self.assertEqual(
            document["events"],
            {
                "jobs": counts,
                "results_since_start": {"delivered": 1, "deferred": 0, "failed": 0},
                "recorded_to_delivered_seconds": {"samples": 1, "p50": 0.25, "p99": 0.25},
            },
        )
        metrics = self.render(Metrics(stats, _Queue())).decode()  # type: ignore[arg-type]
        self.assertIn('rail_queue_events{status="delivered"} 7.0', metrics)
        self.assertIn('rail_events_total{status="delivered",type="message.delivered"} 1.0', metrics)
