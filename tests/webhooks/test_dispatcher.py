"""The dispatcher's scheduling with a scripted ``post`` on a Clock: limits, wake-up,
timeout and stop."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

import rail.webhooks.dispatcher as dispatcher_module
from rail.delivery.bounces import dsn_builder
from rail.testing import MemoryStore
from rail.webhooks.dispatcher import Dispatcher, WebhookLimits
from rail.webhooks.key import WebhookKey
from rail.webhooks.outcome import Answered, Attempt, WebhookPolicy
from rail.webhooks.payload import webhook_body
from rail.webhooks.signing import verify
from tests.webhooks.helpers import T0, MidRandom, inbound


class _Observer:
    def __init__(self) -> None:
        self.results: list[Any] = []

    def attempt(self, job: Any, result: Any, seconds: float) -> None:
        self.results.append(result)


class DispatcherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = MemoryStore(self.clock)
        self.key = WebhookKey(ed25519.Ed25519PrivateKey.generate())
        self.posts: list[tuple[str, dict[str, str], bytes, Deferred[Attempt]]] = []
        self.observer = _Observer()

    def post(self, url: str, headers: dict[str, str], body: bytes) -> Deferred[Attempt]:
        d: Deferred[Attempt] = Deferred()
        self.posts.append((url, headers, body, d))
        return d

    def dispatcher(self, limits: WebhookLimits) -> Dispatcher:
        dispatcher = Dispatcher(
            self.store,
            self.clock,
            post=self.post,
            key=self.key,
            dsn=dsn_builder("rail.test", self.clock.seconds),
            policy=WebhookPolicy(schedule=(30.0,), max_age=3600.0),
            limits=limits,
            timeout=30.0,
            rng=MidRandom(),
            observer=self.observer,
        )
        dispatcher.start()
        return dispatcher

    def spool(self, count: int, url: str, start: int = 0) -> list[str]:
        ids = [f"01KMT1GZ00000000000000{n:04d}" for n in range(start, start + count)]
        for message_id in ids:
            self.successResultOf(self.store.accept_inbound(inbound(message_id, url)))
        return ids

    def count_claims(self) -> list[float]:
        """The times the store is asked for due jobs from now on."""
        claims: list[float] = []
        claim = self.store.claim_webhooks

        def counted(now: float, limit: int, exclude: Any) -> Any:
            claims.append(now)
            return claim(now, limit, exclude)

        self.store.claim_webhooks = counted
        return claims

    def stop(self, dispatcher: Dispatcher, grace: float = 0) -> None:
        stopped = dispatcher.stop(grace)
        self.clock.advance(grace)
        self.successResultOf(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_per_url_and_global_limits(self) -> None:
        """At most per_url POSTs run to one URL and concurrency in all; finishing one
        starts the next waiting for that URL."""
        dispatcher = self.dispatcher(WebhookLimits(per_url=2, concurrency=3))
        self.spool(4, "https://a.example/h")
        self.spool(4, "https://b.example/h", start=10)
        urls = [p[0] for p in self.posts]
        self.assertEqual(len(urls), 3)
        self.assertLessEqual(urls.count("https://a.example/h"), 2)
        self.assertLessEqual(urls.count("https://b.example/h"), 2)
        first_url = self.posts[0][0]
        self.posts[0][3].callback(Answered(200))
        self.assertEqual(len(self.posts), 4)
        self.assertEqual(dispatcher.posting, 3)
        self.assertEqual(self.observer.results[0].status, "delivered")
        for _, _, _, d in self.posts[1:]:
            d.callback(Answered(200))
        while any(not p[3].called for p in self.posts):
            for _, _, _, d in list(self.posts):
                if not d.called:
                    d.callback(Answered(200))
        self.assertEqual(len(self.posts), 8)
        self.assertIn(first_url, urls)
        counts = self.successResultOf(self.store.webhook_counts())
        self.assertEqual(counts["delivered"], 8)
        self.stop(dispatcher)

    def test_full_backlog_refilled_as_posts_finish(self) -> None:
        """Jobs left in the spool because the backlog was full are claimed as soon as
        POSTs finish, without waiting for the poll."""
        dispatcher = self.dispatcher(WebhookLimits(backlog=2))
        self.spool(5, "https://a.example/h")
        self.assertEqual(len(self.posts), 2)
        while any(not p[3].called for p in self.posts):
            for _, _, _, d in list(self.posts):
                if not d.called:
                    d.callback(Answered(200))
        self.assertEqual(len(self.posts), 5)
        self.stop(dispatcher)

    def test_finished_post_claims_only_when_more_may_be_due(self) -> None:
        """A POST finishing after a claim that took everything due does not ask the
        store again (new mail and the poll do)."""
        dispatcher = self.dispatcher(WebhookLimits())
        self.spool(1, "https://a.example/h")
        claims = self.count_claims()
        self.posts[0][3].callback(Answered(200))
        self.assertEqual(claims, [])
        self.clock.advance(1)
        self.assertEqual(len(claims), 1)
        self.stop(dispatcher)

    def test_new_mail_wakes_and_is_signed(self) -> None:
        """Inbound mail spooled while idle is POSTed at once, handed over by the store
        (observe_inbound) without a claim, and signed with the key at the current time."""
        dispatcher = self.dispatcher(WebhookLimits())
        self.assertEqual(self.posts, [])
        self.clock.advance(7)
        claims = self.count_claims()
        [message_id] = self.spool(1, "https://a.example/h")
        self.assertEqual(claims, [])
        [(url, headers, body, d)] = self.posts
        verify(self.key.public_text, headers, body, now=T0 + 7)
        self.assertEqual(headers["webhook-timestamp"], str(int(T0 + 7)))
        self.assertEqual(headers["webhook-id"], f"msg_{message_id}_myapp")
        d.callback(Answered(200))
        self.stop(dispatcher)

    def test_timeout_cancels_and_defers(self) -> None:
        """A POST still running after ``timeout`` is cancelled and recorded as
        "timeout after 30s", retried 30 s later."""
        dispatcher = self.dispatcher(WebhookLimits())
        [message_id] = self.spool(1, "https://a.example/h")
        self.clock.advance(30)
        [(_, _, _, d)] = self.posts
        self.assertTrue(d.called)
        status = self.successResultOf(self.store.inbound_status("myapp", message_id))
        assert status is not None
        self.assertEqual(
            (status.status, status.last_reply, status.next_attempt_at),
            ("deferred", "timeout after 30s", T0 + 60),
        )
        self.clock.advance(30)
        self.assertEqual(len(self.posts), 2)
        self.posts[1][3].callback(Answered(200))
        self.stop(dispatcher)

    def test_stop_within_grace_records(self) -> None:
        """A POST that ends within the grace period is recorded; waiting jobs are left
        queued and untouched."""
        dispatcher = self.dispatcher(WebhookLimits(per_url=1))
        first, second = self.spool(2, "https://a.example/h")
        stopped = dispatcher.stop(10)
        self.clock.advance(5)
        self.posts[0][3].callback(Answered(200))
        self.successResultOf(stopped)
        statuses = [
            self.successResultOf(self.store.inbound_status("myapp", m)) for m in (first, second)
        ]
        self.assertEqual([s.status if s else None for s in statuses], ["delivered", "queued"])
        self.assertEqual(len(self.posts), 1)
        self.assertEqual(dispatcher.in_flight, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unbuildable_webhook_quarantines(self) -> None:
        """A message whose POST cannot be built (the payload raises) is quarantined: every
        job ``failed`` with the reason, reported once, never retried however long the
        clock runs, no DSN; the other messages are POSTed."""
        bad, good = "01KMT1GZ000000000000000BAD", "01KMT1GZ00000000000000G00D"

        def body(job: Any) -> bytes:
            if job.message_id == bad:
                raise UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed")
            return webhook_body(job)

        self.patch(dispatcher_module, "webhook_body", body)
        reported: list[Any] = []
        self.store.observe_quarantined(reported.append)
        dispatcher = self.dispatcher(WebhookLimits())
        self.successResultOf(self.store.accept_inbound(inbound(bad, "https://a.example/h")))
        self.successResultOf(self.store.accept_inbound(inbound(good, "https://a.example/h")))
        self.assertEqual([p[0] for p in self.posts], ["https://a.example/h"])
        status = self.successResultOf(self.store.inbound_status("myapp", bad))
        reason = "preparing the webhook failed (UnicodeEncodeError)"
        self.assertEqual(
            (status.status, status.last_reply, status.attempts),
            ("failed", "quarantined: " + reason, 0),
        )
        self.assertEqual(
            [(r.message_id, r.kind, r.reason) for r in reported], [(bad, "error", reason)]
        )
        self.posts[0][3].callback(Answered(200))
        for _ in range(5):
            self.clock.advance(3600)
        self.assertEqual(len(self.posts), 1)
        self.assertEqual(self.store.messages, {})  # no DSN
        self.assertEqual(dispatcher.in_flight, 0)
        self.stop(dispatcher)
