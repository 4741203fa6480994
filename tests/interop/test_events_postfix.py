"""Issue 16's whole loop against a real Postfix: events, asynchronous bounces, suppression.

Rail runs in this process with its HTTPS API, port 25 and DNS on loopback. A real Postfix
is the MX of ``dest.test``: it refuses ``rejected@`` at RCPT with ``550 5.1.1``, delivers
to ``bob@``, and accepts ``gone@`` (it has no mailbox for it), then sends its own DSN to
the message's signed return path, relayed to Rail's port 25. The app subscribed to every
event type (in the registry, as ``rail clients events`` does) and its receiver on loopback
gets ``message.delivered`` for bob, ``message.bounced`` from RCPT for rejected and
``message.bounced`` from the DSN for gone, each verified with the ``standardwebhooks``
package and carrying the app's ``request_id`` and metadata. Both bounced addresses land
on the app's suppression list; a second send to them answers ``202`` listing them as
suppressed, yields ``message.suppressed`` for each, and Postfix sees no new transaction.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from standardwebhooks.webhooks import Webhook
from twisted.internet import reactor
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.names import dns as tdns
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from rail.pki.registry import Registry, registry_path
from rail.service import build_service
from rail.store.schema import database_path
from rail.webhooks.key import load_or_create_key
from tests.integration.fixtures import make_config
from tests.integration.processes import free_port
from tests.integration.test_events_e2e import _Receiver
from tests.integration.tlsclient import https_request
from tests.support.dnsserver import start_dns
from tests.support.postfix import start_postfix

_BOUNCING = """
smtpd_reject_unlisted_recipient = no
virtual_mailbox_maps = inline:{ {bob@dest.test=inbox/} }
smtpd_recipient_restrictions = check_recipient_access inline:{
    { rejected@dest.test=550 5.1.1 Recipient address rejected: User unknown } },
    permit_mynetworks, reject_unauth_destination
"""
_WAIT = 90.0


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class EventsThroughPostfixTests(TestCase):
    timeout = 240

    async def wait_for(self, what: str, done: Any, explain: Any = None) -> None:
        deadline = reactor.seconds() + _WAIT
        while not done():
            if reactor.seconds() > deadline:
                detail = explain() if explain is not None else ""
                self.fail(f"not {what} within {_WAIT}s\n{detail}")
            await deferLater(reactor, 0.1)

    async def test_delivered_bounced_twice_suppressed(self) -> None:
        """delivered, bounced at RCPT, bounced by Postfix's DSN: each verified with
        standardwebhooks; both bounced addresses suppressed; a second send to them makes
        message.suppressed events and no SMTP transaction."""
        base = Path(self.mktemp()).absolute()
        base.mkdir(parents=True)
        receiver = _Receiver()
        app = reactor.listenTCP(0, Site(receiver), interface="127.0.0.1")
        self.addCleanup(maybeDeferred, app.stopListening)
        world = await start_dns(
            reactor,
            {
                "dest.test": [tdns.Record_MX(10, b"mx.dest.test", ttl=60)],
                "mx.dest.test": [tdns.Record_A("127.0.0.1", ttl=60)],
            },
        )
        self.addCleanup(world.stop)
        postfix_port, inbound_port, dns_port = free_port(), free_port(), free_port()
        config = make_config(
            base / "data",
            listen={
                "https": "tcp:0:interface=127.0.0.1",
                "submission": None,
                "inbound": f"tcp:{inbound_port}:interface=127.0.0.1",
                "http": None,
                "dns": f"tcp:{dns_port}:interface=127.0.0.1",
            },
            delivery={"nameservers": [f"127.0.0.1:{world.port}"], "port": postfix_port},
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
        events_url = f"http://127.0.0.1:{app.getHost().port}/events"
        with Registry.open(registry_path(config.data_dir)) as registry:
            registry.set_events("app", ["all"], events_url, now, allow_http_loopback=True)
        service = build_service(config, reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        store: Any = service.getServiceNamed("store").store
        await self.wait_for(
            "subscribed", lambda: store.subscriptions.wants("app", "message.suppressed")
        )

        postfix = start_postfix(
            postfix_port, ("dest.test",), relay_to=inbound_port, extra=_BOUNCING
        )
        self.addCleanup(postfix.stop)
        # Its own start line, not only an open port: a port chosen free may have been
        # taken by another test meanwhile, and Postfix would then not be the one answering.
        await self.wait_for(
            "Postfix started and listening",
            lambda: (
                _accepts(postfix_port)
                and postfix.log.exists()
                and "daemon started" in postfix.log.read_text()
            ),
        )

        https = service.getServiceNamed("https").port.getHost().port
        ca = config.data_dir / "ca" / "ca.crt"

        async def send(request_id: str, to: list[str]) -> dict[str, Any]:
            body = json.dumps(
                {
                    "from": "app@rail.test",
                    "to": to,
                    "subject": "events through Postfix",
                    "body_text": "hello",
                    "request_id": request_id,
                    "metadata": {"user": "42"},
                    "tag": "welcome",
                }
            ).encode()
            response = await deferToThread(
                https_request,
                https,
                "POST",
                "/api/v1/send",
                ca,
                cert=(issued.certificate_path, issued.key_path),
                body=body,
                extra_headers={"Content-Type": "application/json"},
            )
            self.assertEqual(response.status, 202, response.body)
            answer: dict[str, Any] = json.loads(response.body)
            return answer

        first = await send("first", ["bob@dest.test", "gone@dest.test", "rejected@dest.test"])
        self.assertEqual(first["suppressed"], [])
        secret = load_or_create_key(config.data_dir).client_secret_text("app")

        def verified() -> list[dict[str, Any]]:
            events = []
            for headers, raw in receiver.requests:
                event = Webhook(secret).verify(raw, headers)
                self.assertEqual(headers["webhook-id"], event["id"])
                events.append(event)
            return events

        def of(message_id: str) -> dict[tuple[str, str | None, str | None], dict[str, Any]]:
            return {
                (e["type"], e["recipient"], e["details"].get("source")): e
                for e in verified()
                if e["message_id"] == message_id
            }

        wanted = {
            ("message.delivered", "bob@dest.test", None),
            ("message.bounced", "rejected@dest.test", "smtp"),
            ("message.bounced", "gone@dest.test", "dsn"),
        }

        def postfix_log() -> str:
            return postfix.log.read_text() if postfix.log.exists() else "(no Postfix log)"

        await self.wait_for(
            "delivered, bounced at RCPT and bounced by DSN",
            lambda: wanted <= set(of(first["id"])),
            lambda: f"events: {sorted(of(first['id']))}\nPostfix:\n{postfix_log()}",
        )
        events = of(first["id"])
        for key in wanted:
            event = events[key]
            self.assertEqual(
                (event["client"], event["request_id"], event["tag"], event["metadata"]),
                ("app", "first", "welcome", {"user": "42"}),
            )
        rcpt = events[("message.bounced", "rejected@dest.test", "smtp")]["details"]
        self.assertEqual(
            (rcpt["classification"], rcpt["status"], rcpt["suppressed"]),
            ("hard", "5.1.1", True),
        )
        dsn = events[("message.bounced", "gone@dest.test", "dsn")]["details"]
        self.assertEqual(
            (dsn["classification"], dsn["status"], dsn["suppressed"]), ("hard", "5.1.1", True)
        )
        self.assertEqual(
            events[("message.delivered", "bob@dest.test", None)]["details"]["mx"], "mx.dest.test"
        )

        connection = sqlite3.connect(database_path(config.data_dir / "queue"))
        self.addCleanup(connection.close)
        self.assertEqual(
            sorted(
                connection.execute(
                    "SELECT address, reason, source FROM suppressions WHERE client = 'app'"
                ).fetchall()
            ),
            [
                ("gone@dest.test", "hard_bounce", "dsn"),
                ("rejected@dest.test", "hard_bounce", "rcpt"),
            ],
        )
        transactions = postfix_log().count("from=<b-")

        second = await send("second", ["gone@dest.test", "rejected@dest.test"])
        self.assertEqual(
            sorted(s["address"] for s in second["suppressed"]),
            ["gone@dest.test", "rejected@dest.test"],
        )
        await self.wait_for(
            "two message.suppressed events",
            lambda: (
                {(k[0], k[1]) for k in of(second["id"]) if k[0] == "message.suppressed"}
                == {
                    ("message.suppressed", "gone@dest.test"),
                    ("message.suppressed", "rejected@dest.test"),
                }
            ),
        )
        (suppressed,) = [
            e
            for (kind, recipient, _), e in of(second["id"]).items()
            if (kind, recipient) == ("message.suppressed", "gone@dest.test")
        ]
        self.assertEqual(suppressed["details"]["reason"], "hard_bounce")
        self.assertEqual(suppressed["details"]["source_message_id"], first["id"])
        # Nothing of the second message was attempted: both recipients are final as
        # suppressed, there are no attempt rows, and Postfix saw no new transaction.
        status = await store.status("app", second["id"])
        self.assertEqual([r.status for r in status.recipients], ["suppressed", "suppressed"])
        self.assertEqual(
            connection.execute(
                "SELECT count(*) FROM attempts WHERE message_id = ?", (second["id"],)
            ).fetchone(),
            (0,),
        )
        self.assertEqual(postfix_log().count("from=<b-"), transactions)
