"""Event delivery faults end to end: the real event dispatcher, signing and HTTP client
against a real twisted.web receiver on 127.0.0.1, over the SQLite store.

As in tests/webhooks/test_faults.py, the dispatcher runs on a :class:`Clock` while the
real reactor carries the sockets and the store's threads: retry times are exact (jitter
factor 1) and retries and the timeout happen only when the test advances the Clock. The
``standardwebhooks`` package checks a signature's timestamp against the current time: the
tests give it the time of the attempt instead.
"""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import standardwebhooks.webhooks as standard
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet import reactor
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogLevel, globalLogPublisher

from rail.events.model import EVENT_TYPES, Event
from rail.events.subscriptions import Subscription, Subscriptions
from rail.store.events import insert_events
from rail.store.messagemeta import insert_meta
from rail.store.model import MessageMeta
from rail.store.sqlite import SQLiteStore
from rail.webhooks.client import WebhookClient
from rail.webhooks.dispatcher import WebhookLimits
from rail.webhooks.eventdispatch import EventDispatcher
from rail.webhooks.key import WebhookKey
from rail.webhooks.outcome import WebhookPolicy
from rail.webhooks.signing import verify
from tests.webhooks.helpers import T0, MidRandom
from tests.webhooks.test_faults import _WAIT, _Harness

_POLICY = WebhookPolicy(schedule=(30.0, 60.0), max_age=3600.0)
_TIMEOUT = 30.0
_MESSAGE = "01KMT1GZ0000000000000000AB"
_PAYLOAD_FIELDS = {
    "type",
    "id",
    "timestamp",
    "client",
    "message_id",
    "request_id",
    "tag",
    "metadata",
    "recipient",
    "sandbox",
    "details",
}


class _EventHarness(_Harness):
    def setUp(self) -> None:
        super().setUp()
        self.clock = Clock()
        self.clock.advance(T0)
        self.key = WebhookKey(ed25519.Ed25519PrivateKey.generate())
        self.certificate_urls: dict[str, str] = {}
        self.directory = Path(self.mktemp()).resolve()

    async def open_store(self) -> SQLiteStore:
        store = SQLiteStore.open(self.directory, reactor, max_queued=100, min_free_bytes=0)
        store.start()
        store.subscriptions = Subscriptions({"myapp": Subscription(frozenset(EVENT_TYPES))})
        return store

    def events(self, store: SQLiteStore, store_now: float = T0) -> EventDispatcher:
        self.client = WebhookClient(
            reactor,
            resolve=self.resolve,
            allow_private=True,
            allow_http_loopback=True,
            trust=None,
            connect_timeout=5,
        )
        dispatcher = EventDispatcher(
            store,
            self.clock,
            post=self.client.post,
            key=self.key,
            policy=_POLICY,
            limits=WebhookLimits(),
            timeout=_TIMEOUT,
            rng=MidRandom(),
            webhook_url=self.certificate_urls.get,
        )
        dispatcher.start()
        return dispatcher

    async def emit(self, store: SQLiteStore, *events: Event) -> list[str]:
        """Queue ``events`` in a writer transaction, as a recorded delivery does."""

        def write(connection: Any) -> tuple[list[str], int]:
            return insert_events(connection, events, T0, store.subscriptions), 0

        ids: list[str] = await store._run(write, True)
        return ids

    async def row(self, store: SQLiteStore, event_id: str) -> tuple[Any, ...]:
        def read(connection: Any) -> tuple[Any, ...]:
            return tuple(
                connection.execute(
                    "SELECT status, last_reply, attempts, next_attempt_at FROM events WHERE id = ?",
                    (event_id,),
                ).fetchone()
            )

        return await store._read(read)  # type: ignore[no-any-return]

    async def until_attempts(self, store: SQLiteStore, event_id: str, attempts: int) -> None:
        deadline = reactor.seconds() + _WAIT
        while (await self.row(store, event_id))[2] < attempts:
            if reactor.seconds() > deadline:
                self.fail(f"not within {_WAIT}s: {event_id} attempt {attempts}")
            await deferLater(reactor, 0.01)

    async def close(self, dispatcher: EventDispatcher, store: SQLiteStore) -> None:
        stopped = dispatcher.stop(30)
        self.clock.advance(0)
        await stopped
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(dispatcher.in_flight, 0)
        await self.client.close()
        await store.close()

    def verified(self, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """The body, verified with the ``standardwebhooks`` package and the client's
        secret (``v1``) and with Rail's public key (``v1a``)."""
        stamp = float(headers["webhook-timestamp"])

        class _Then(datetime):
            """``datetime`` whose ``now`` is the attempt's time (on the test's Clock)."""

            @classmethod
            def now(cls, tz: tzinfo | None = None) -> Any:
                return datetime.fromtimestamp(stamp, tz)

        self.patch(standard, "datetime", _Then)
        webhook = standard.Webhook(self.key.client_secret_text("myapp"))
        parsed: dict[str, Any] = webhook.verify(body, headers)
        verify(self.key.public_text, headers, body, now=int(headers["webhook-timestamp"]))
        return parsed


def _delivered(mx: str = "mx.example.net") -> Event:
    return Event(
        "message.delivered",
        "myapp",
        _MESSAGE,
        "rcpt@example.net",
        {
            "mx": mx,
            "address": "192.0.2.1",
            "tls": "TLSv1.3",
            "reply": "250 ok",
            "attempt": 1,
            "delay": 1.5,
        },
    )


class EventFaultTests(_EventHarness):
    async def test_500_then_200_delivered_on_schedule_same_id(self) -> None:
        """A 500 defers the event to exactly +30 s and nothing is POSTed before; at +30 s
        it is delivered. Both POSTs carry the event id as webhook-id, and each verifies
        with the standardwebhooks package and the client's secret."""
        port = self.receiver([(500, {}), (200, {})])
        self.certificate_urls["myapp"] = f"http://127.0.0.1:{port}/events"
        store = await self.open_store()
        dispatcher = self.events(store)
        [event_id] = await self.emit(store, _delivered())
        await self.until_attempts(store, event_id, 1)
        self.assertEqual(
            await self.row(store, event_id),
            ("deferred", "HTTP 500 Internal Server Error", 1, T0 + 30),
        )
        self.clock.advance(29)
        await deferLater(reactor, 0.1)
        self.assertEqual(len(self.resource.requests), 1)
        self.clock.advance(1)
        await self.until_attempts(store, event_id, 2)
        self.assertEqual(await self.row(store, event_id), ("delivered", "HTTP 200 OK", 2, None))
        (first, body1), (second, body2) = self.resource.requests
        self.assertEqual((first["webhook-id"], second["webhook-id"]), (event_id, event_id))
        self.assertEqual(
            (first["webhook-timestamp"], second["webhook-timestamp"]),
            (str(int(T0)), str(int(T0 + 30))),
        )
        self.assertEqual(self.verified(first, body1), self.verified(second, body2))
        self.assertEqual(self.verified(second, body2)["id"], event_id)
        await self.close(dispatcher, store)

    async def test_4xx_fails_not_retried_and_visible(self) -> None:
        """A 410 fails the event at once: visible as ``failed`` with the reply, never
        POSTed again, one event.final line."""
        port = self.receiver([(410, {})])
        self.certificate_urls["myapp"] = f"http://127.0.0.1:{port}/events"
        store = await self.open_store()
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        dispatcher = self.events(store)
        [event_id] = await self.emit(store, _delivered())
        await self.until_attempts(store, event_id, 1)
        self.assertEqual(await self.row(store, event_id), ("failed", "HTTP 410 Gone", 1, None))
        self.clock.advance(3600)
        await deferLater(reactor, 0.1)
        self.assertEqual(len(self.resource.requests), 1)
        await self.close(dispatcher, store)
        kinds = [e.get("rail_event") for e in logged if e.get("rail_event")]
        self.assertEqual(kinds, ["event.attempt", "event.final"])
        final = next(e for e in logged if e.get("rail_event") == "event.final")
        self.assertEqual(
            (final["event_id"], final["result"], final["reply"], final["log_level"]),
            (event_id, "failed", "HTTP 410 Gone", LogLevel.warn),
        )

    async def test_timeout_retried(self) -> None:
        """A receiver that never answers: after the timeout (on the Clock) the POST is
        cancelled and the event deferred to +30 s after it; the retry is delivered."""
        port = self.receiver(["hang", (200, {})])
        self.certificate_urls["myapp"] = f"http://127.0.0.1:{port}/events"
        store = await self.open_store()
        dispatcher = self.events(store)
        [event_id] = await self.emit(store, _delivered())
        await self.until(lambda: len(self.resource.requests) == 1, "first POST")
        self.clock.advance(_TIMEOUT)
        await self.until_attempts(store, event_id, 1)
        self.assertEqual(
            await self.row(store, event_id),
            ("deferred", "timeout after 30s", 1, T0 + _TIMEOUT + 30),
        )
        self.clock.advance(30)
        await self.until_attempts(store, event_id, 2)
        self.assertEqual(await self.row(store, event_id), ("delivered", "HTTP 200 OK", 2, None))
        await self.close(dispatcher, store)

    async def test_restart_mid_post_posts_again_with_same_id(self) -> None:
        """Stopped while a POST hangs: after the grace period the POST is cut and the
        event stays queued with no attempt; a new store and dispatcher on the same
        directory POST it again with the same webhook-id, and it is delivered."""
        port = self.receiver(["hang", (200, {})])
        self.certificate_urls["myapp"] = f"http://127.0.0.1:{port}/events"
        store = await self.open_store()
        dispatcher = self.events(store)
        [event_id] = await self.emit(store, _delivered())
        await self.until(lambda: len(self.resource.requests) == 1, "first POST")
        stopped = dispatcher.stop(5)
        self.clock.advance(5)
        await stopped
        self.assertEqual(await self.row(store, event_id), ("queued", None, 0, T0))
        await self.client.close()
        await store.close()

        again = await self.open_store()
        dispatcher = self.events(again)
        await self.until_attempts(again, event_id, 1)
        self.assertEqual(await self.row(again, event_id), ("delivered", "HTTP 200 OK", 1, None))
        (first, body1), (second, body2) = self.resource.requests
        self.assertEqual((first["webhook-id"], second["webhook-id"]), (event_id, event_id))
        self.assertEqual(self.verified(first, body1), self.verified(second, body2))
        await self.close(dispatcher, again)

    async def test_no_url_fails_with_clear_reply(self) -> None:
        """A client with neither a subscription URL nor a certificate webhook: the event
        is failed at once with a reply saying so, and nothing is POSTed."""
        self.receiver([(200, {})])
        store = await self.open_store()
        dispatcher = self.events(store)
        [event_id] = await self.emit(store, _delivered())
        await self.until_attempts(store, event_id, 1)
        self.assertEqual(
            await self.row(store, event_id),
            (
                "failed",
                "no URL for events: client myapp has no events URL and its certificate no webhook",
                1,
                None,
            ),
        )
        self.assertEqual(self.resource.requests, [])
        await self.close(dispatcher, store)


class EventPayloadTests(_EventHarness):
    async def test_payload_has_exactly_the_documented_fields(self) -> None:
        """The subscription's URL wins over the certificate's webhook; the POSTed JSON
        has exactly the documented fields, with the message's request_id, tag and
        metadata and the type's details."""
        port = self.receiver([(200, {})])
        self.certificate_urls["myapp"] = "http://127.0.0.1:1/not-this-one"
        store = await self.open_store()
        store.subscriptions = Subscriptions(
            {"myapp": Subscription(frozenset(EVENT_TYPES), f"http://127.0.0.1:{port}/ev")}
        )

        def meta(connection: Any) -> tuple[None, int]:
            connection.execute(
                "INSERT INTO messages VALUES (?, 'myapp', 'a@x', 'api', 0, 0, 1.0, 1, 'h', x'00')",
                (_MESSAGE,),
            )
            insert_meta(connection, _MESSAGE, MessageMeta("req-7", "welcome", {"user": "42"}))
            return None, 0

        await store._run(meta, True)
        dispatcher = self.events(store)
        [event_id] = await self.emit(store, _delivered())
        await self.until_attempts(store, event_id, 1)
        [(headers, body)] = self.resource.requests
        payload = self.verified(headers, body)
        self.assertEqual(set(payload), _PAYLOAD_FIELDS)
        self.assertEqual(
            payload,
            {
                "type": "message.delivered",
                "id": event_id,
                "timestamp": "2026-03-28T12:00:00Z",
                "client": "myapp",
                "message_id": _MESSAGE,
                "request_id": "req-7",
                "tag": "welcome",
                "metadata": {"user": "42"},
                "recipient": "rcpt@example.net",
                "sandbox": False,
                "details": {
                    "mx": "mx.example.net",
                    "address": "192.0.2.1",
                    "tls": "TLSv1.3",
                    "reply": "250 ok",
                    "attempt": 1,
                    "delay": 1.5,
                },
            },
        )
        self.assertEqual(json.loads(body), payload)
        await self.close(dispatcher, store)
