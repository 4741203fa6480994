"""Events through the whole service: once a client subscribes, an event stored by the
writer is POSTed to the webhook URL of the client's certificate, signed with the client's
secret, with port 25 off (the service builds the certificate directory for events)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from standardwebhooks.webhooks import Webhook
from twisted.internet import reactor
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from rail.events.model import EVENT_TYPES, Event
from rail.events.subscriptions import Subscription, Subscriptions
from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from rail.service import build_service
from rail.shared.registry import registry_source
from rail.store.events import insert_events
from rail.webhooks.key import load_or_create_key
from tests.integration.fixtures import make_config, storage_overrides
from tests.webhooks.test_faults import _Receiver


class EventWiringTests(TestCase):
    timeout = 60

    async def test_subscribed_event_reaches_the_certificate_webhook(self) -> None:
        """A stored event of a subscribed client is POSTed to its certificate's webhook
        and verifies with the standardwebhooks package; an unsubscribed one is not
        stored at all."""
        receiver = _Receiver([(200, {})])
        port = reactor.listenTCP(0, Site(receiver), interface="127.0.0.1")
        self.addCleanup(maybeDeferred, port.stopListening)
        base = Path(self.mktemp()).absolute()
        base.mkdir(parents=True)
        config = make_config(
            base / "data",
            **storage_overrides(self),
            delivery={"hold": True},
            webhooks={"allow_private": True, "allow_http_loopback": True},
        )
        url = f"http://127.0.0.1:{port.getHost().port}/hook"
        request = ClientRequest(
            name="app",
            emails=("app@rail.test",),
            webhook=url,
            key_type="ed25519",
            validity=timedelta(days=30),
        )
        issue_client(config, request, base, datetime.now(UTC), source=registry_source(config))
        service = build_service(config, reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        store: Any = service.getServiceNamed("store").store
        store.subscriptions = Subscriptions({"app": Subscription(frozenset(EVENT_TYPES))})
        details = {"attempts": 3, "last_reply": "HTTP 503 Service Unavailable"}
        events = [
            Event("inbound.failed", "app", "01KMT1GZ0000000000000000AB", details=details),
            Event("inbound.failed", "other", "01KMT1GZ0000000000000000AC"),
        ]

        def write(connection: Any) -> tuple[list[str], int]:
            return insert_events(connection, events, reactor.seconds(), store.subscriptions), 0

        [event_id] = await store._run(write, True)
        deadline = reactor.seconds() + 10
        while not receiver.requests:
            self.assertLess(reactor.seconds(), deadline, "no event POSTed")
            await deferLater(reactor, 0.01)
        [(headers, body)] = receiver.requests
        secret = load_or_create_key(config.data_dir).client_secret_text("app")
        payload = Webhook(secret).verify(body, headers)
        self.assertEqual(
            (headers["webhook-id"], payload["type"], payload["details"]),
            (event_id, "inbound.failed", details),
        )
        self.assertEqual(json.loads(body)["client"], "app")
