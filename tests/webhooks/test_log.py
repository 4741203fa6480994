"""The webhook log: the exact lines the dispatcher writes for each outcome of a POST.

A scripted ``post`` on a Clock (as in test_dispatcher); ``capturedLogs`` collects what
the dispatcher logs in ``rail.webhooks``.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

import rail.webhooks.dispatcher as dispatcher_module
from rail.delivery.bounces import dsn_builder
from rail.testing import MemoryStore
from rail.webhooks.dispatcher import Dispatcher, WebhookLimits
from rail.webhooks.key import WebhookKey
from rail.webhooks.outcome import Answered, Attempt, Unreachable, WebhookPolicy
from tests.webhooks.helpers import T0, MidRandom, inbound

_ID = "01KMT1GZ0000000000000000AB"
_URL = "https://hooks.example.com/mail?token=s3cret"
_LEGACY = {"message", "time", "system", "format", "isError"}


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    """The event's own fields (not Twisted's, Rail's or trial's legacy observer's keys)."""
    return {
        k: v for k, v in event.items() if not k.startswith(("log_", "rail_")) and k not in _LEGACY
    }


class WebhookLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = MemoryStore(self.clock)
        self.posts: list[Deferred[Attempt]] = []
        self.dispatcher = Dispatcher(
            self.store,
            self.clock,
            post=self.post,
            key=WebhookKey(ed25519.Ed25519PrivateKey.generate()),
            dsn=dsn_builder("rail.test", self.clock.seconds),
            policy=WebhookPolicy(schedule=(30.0,), max_age=3600.0),
            limits=WebhookLimits(),
            timeout=30.0,
            rng=MidRandom(),
        )
        self.dispatcher.start()

    def post(self, url: str, headers: dict[str, str], body: bytes) -> Deferred[Attempt]:
        d: Deferred[Attempt] = Deferred()
        self.posts.append(d)
        return d

    def spool(self) -> None:
        self.successResultOf(self.store.accept_inbound(inbound(_ID, _URL)))

    def lines(self, events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
        return [
            _fields(e)
            for e in events
            if e.get("log_namespace") == "rail.webhooks" and e.get("rail_event") == kind
        ]

    def test_delivered(self) -> None:
        """A 2xx gives one attempt line and one final line ``delivered`` with exactly the
        documented fields; the URL's host is logged, never its path or query."""
        with capturedLogs() as events:
            self.spool()
            self.clock.advance(1.5)
            self.posts[0].callback(Answered(204))
        [attempt] = self.lines(events, "webhook.attempt")
        self.assertEqual(
            attempt,
            {
                "msg_id": _ID,
                "client": "myapp",
                "host": "hooks.example.com",
                "result": "delivered",
                "reply": "HTTP 204 No Content",
                "attempt": 1,
                "delay": 1.5,
                "duration": 1.5,
                "next_attempt": None,
            },
        )
        [final] = self.lines(events, "webhook.final")
        self.assertEqual(
            final,
            {
                "msg_id": _ID,
                "client": "myapp",
                "host": "hooks.example.com",
                "result": "delivered",
                "reply": "HTTP 204 No Content",
                "attempts": 1,
                "delay": 1.5,
            },
        )
        text = "".join(formatEvent(e) for e in events)
        self.assertNotIn("s3cret", text)
        self.assertIn("webhook.final msg_id=01KMT1GZ0000000000000000AB client=myapp", text)

    def test_retried(self) -> None:
        """A 503 gives an attempt line ``deferred`` with the next attempt's time and no
        final line; the retry's line counts attempt 2."""
        with capturedLogs() as events:
            self.spool()
            self.posts[0].callback(Answered(503))
        [attempt] = self.lines(events, "webhook.attempt")
        self.assertEqual(
            (attempt["result"], attempt["reply"], attempt["attempt"], attempt["next_attempt"]),
            ("deferred", "HTTP 503 Service Unavailable", 1, "2026-03-28T12:00:30Z"),
        )
        self.assertEqual(self.lines(events, "webhook.final"), [])
        with capturedLogs() as events:
            self.clock.advance(30)
            self.posts[1].callback(Unreachable("connection refused"))
        [attempt] = self.lines(events, "webhook.attempt")
        self.assertEqual(
            (attempt["result"], attempt["reply"], attempt["attempt"], attempt["delay"]),
            ("deferred", "connection refused", 2, 30.0),
        )

    def test_failed(self) -> None:
        """A 4xx fails the job: its final line ``failed`` is a warning."""
        with capturedLogs() as events:
            self.spool()
            self.posts[0].callback(Answered(404))
        [attempt] = self.lines(events, "webhook.attempt")
        self.assertEqual((attempt["result"], attempt["reply"]), ("failed", "HTTP 404 Not Found"))
        [final] = [e for e in events if e.get("rail_event") == "webhook.final"]
        self.assertEqual(
            (final["result"], final["attempts"], final["log_level"]),
            ("failed", 1, LogLevel.warn),
        )

    def test_quarantined(self) -> None:
        """A message whose POST cannot be built gets a final line ``failed`` with the reply
        the store records, and no attempt line."""

        def body(job: Any) -> bytes:
            raise UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed")

        self.patch(dispatcher_module, "webhook_body", body)
        with capturedLogs() as events:
            self.spool()
        self.assertEqual(self.lines(events, "webhook.attempt"), [])
        self.assertEqual(
            self.lines(events, "webhook.final"),
            [
                {
                    "msg_id": _ID,
                    "client": "myapp",
                    "host": "hooks.example.com",
                    "result": "failed",
                    "reply": "quarantined: preparing the webhook failed (UnicodeEncodeError)",
                    "attempts": 0,
                    "delay": 0.0,
                }
            ],
        )
