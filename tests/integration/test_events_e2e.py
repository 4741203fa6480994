"""Events end to end, real sockets on loopback: a client subscribes in the registry (as
``rail clients events`` does) while Rail runs, sends a message over the HTTPS API to two
recipients, Rail delivers it to a loopback MX found through a loopback DNS server, which
accepts one recipient and refuses the other at RCPT with 5.1.1; the application's receiver
gets ``message.accepted``, ``message.delivered`` and ``message.bounced``, each verified
with the ``standardwebhooks`` package and valid against docs/events' JSON Schemas, and the
refused address is on the client's suppression list."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
from standardwebhooks.webhooks import Webhook
from twisted.internet import reactor
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.names import dns
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from rail.pki.registry import Registry, registry_path
from rail.policy.verdict import Reject
from rail.service import build_service
from rail.store.schema import database_path
from rail.webhooks.key import load_or_create_key
from tests.integration.fixtures import make_config
from tests.integration.test_delivery_faults import _RailServers
from tests.integration.tlsclient import https_request
from tests.support.dnsserver import start_dns

_DOCS = Path(__file__).resolve().parents[2] / "docs" / "events"
_WAIT = 20.0


class _Receiver(Resource):
    """The application: records each POST's headers and raw body, answers 200."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[dict[str, str], bytes]] = []

    def render_POST(self, request: Request) -> bytes:
        headers = {
            name.decode().lower(): values[0].decode()
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        assert request.content is not None
        self.requests.append((headers, request.content.read()))
        return b"ok\n"


class EventsEndToEndTests(TestCase):
    timeout = 60

    async def wait_for(self, what: str, done: Any) -> None:
        deadline = reactor.seconds() + _WAIT
        while not done():
            self.assertLess(reactor.seconds(), deadline, f"not {what} within {_WAIT}s")
            await deferLater(reactor, 0.02)

    async def test_subscribe_send_deliver_bounce(self) -> None:
        """Subscribed while running, the client's receiver gets accepted, delivered and
        bounced (hard, suppressed) for one message, each signed and schema-valid."""
        receiver = _Receiver()
        app = reactor.listenTCP(0, Site(receiver), interface="127.0.0.1")
        self.addCleanup(maybeDeferred, app.stopListening)
        mx = _RailServers()
        mx.session.rcpt_verdicts["gone@example.net"] = Reject(550, "5.1.1", "no such user")
        mx_port = reactor.listenTCP(0, mx, interface="127.0.0.1")
        self.addCleanup(maybeDeferred, mx_port.stopListening)
        dns_server = await start_dns(
            reactor,
            {
                "example.net": [dns.Record_MX(10, b"mx.example.net", ttl=3600)],
                "mx.example.net": [dns.Record_A("127.0.0.1", ttl=3600)],
            },
        )
        self.addCleanup(dns_server.stop)

        base = Path(self.mktemp()).absolute()
        base.mkdir(parents=True)
        config = make_config(
            base / "data",
            delivery={
                "nameservers": [f"127.0.0.1:{dns_server.port}"],
                "port": mx_port.getHost().port,
            },
            webhooks={"allow_private": True, "allow_http_loopback": True},
        )
        now = datetime.now(UTC)
        issued = issue_client(
            config,
            ClientRequest(
                name="app",
                emails=("app@rail.test",),
                webhook="https://app.example/inbound",
                key_type="ed25519",
                validity=timedelta(days=30),
            ),
            base,
            now,
        )
        service = build_service(config, reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        store: Any = service.getServiceNamed("store").store

        # What `rail clients events app --events all --events-url URL` does, from outside.
        events_url = f"http://127.0.0.1:{app.getHost().port}/events"
        with Registry.open(registry_path(config.data_dir)) as registry:
            registry.set_events("app", ["all"], events_url, now, allow_http_loopback=True)
        await self.wait_for(
            "subscribed", lambda: store.subscriptions.wants("app", "message.bounced")
        )

        https = service.getServiceNamed("https").port.getHost().port
        body = json.dumps(
            {
                "from": "app@rail.test",
                "to": ["ok@example.net", "gone@example.net"],
                "subject": "events",
                "body_text": "hello",
            }
        ).encode()
        response = await deferToThread(
            https_request,
            https,
            "POST",
            "/api/v1/send",
            config.data_dir / "ca" / "ca.crt",
            cert=(issued.certificate_path, issued.key_path),
            body=body,
            extra_headers={"Content-Type": "application/json"},
        )
        self.assertEqual(response.status, 202, response.body)
        message_id = json.loads(response.body)["id"]

        await self.wait_for("three events POSTed", lambda: len(receiver.requests) >= 3)
        secret = load_or_create_key(config.data_dir).client_secret_text("app")
        received = {}
        for headers, raw in receiver.requests:
            event = Webhook(secret).verify(raw, headers)
            self.assertEqual(headers["webhook-id"], event["id"])
            schema = json.loads((_DOCS / f"{event['type']}.schema.json").read_text())
            jsonschema.validate(event, schema, jsonschema.Draft202012Validator)
            self.assertEqual((event["client"], event["message_id"]), ("app", message_id))
            received[(event["type"], event["recipient"])] = event["details"]
        self.assertEqual(
            sorted(received),
            [
                ("message.accepted", None),
                ("message.bounced", "gone@example.net"),
                ("message.delivered", "ok@example.net"),
            ],
        )
        delivered = received[("message.delivered", "ok@example.net")]
        self.assertEqual(
            (delivered["mx"], delivered["address"], delivered["attempt"]),
            ("mx.example.net", "127.0.0.1", 1),
        )
        self.assertEqual(delivered["reply"], "250 2.0.0 Ok: queued as X")
        bounced = received[("message.bounced", "gone@example.net")]
        self.assertEqual(
            {k: bounced[k] for k in ("source", "classification", "status", "mx", "suppressed")},
            {
                "source": "smtp",
                "classification": "hard",
                "status": "5.1.1",
                "mx": "mx.example.net",
                "suppressed": True,
            },
        )
        connection = sqlite3.connect(database_path(config.data_dir / "queue"))
        self.addCleanup(connection.close)
        self.assertEqual(
            connection.execute(
                "SELECT client, address, reason, message_id FROM suppressions"
            ).fetchall(),
            [("app", "gone@example.net", "hard_bounce", message_id)],
        )
