"""Interop: a real Postfix relays mail to Rail's port 25 with STARTTLS, and Rail POSTs it to
the application's webhook, signed so that the ``standardwebhooks`` package verifies it.

Postfix runs as a private instance on loopback (tests/support/postfix.py) with
``relayhost`` = Rail's inbound port and ``smtp_tls_security_level = encrypt``. Rail checks
SPF against a real DNS server on loopback, stores the message and POSTs it to a twisted.web
receiver in this process.
"""

from __future__ import annotations

import base64
import json
import smtplib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web import resource, server

from rail.config import load_config
from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from rail.webhooks.key import load_or_create_key
from rail.webhooks.signing import verify
from tests.integration.processes import free_port, wait_for_port
from tests.interop.helpers import start_rail
from tests.interop.test_delivery import _accepts, _wait_for
from tests.support.dnsserver import start_dns, txt_record
from tests.support.postfix import need_postfix, start_postfix
from tests.support.tools import missing

_SUBJECT = "Caf\u00e9 order 42"
_BODY = "Hello Rail,\r\n.leading dot line\r\nlast line\r\n"


class _Receiver(resource.Resource):
    """Records every POST (headers and body) and answers 200."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[tuple[dict[str, str], bytes]] = []

    def render_POST(self, request: Any) -> bytes:
        headers = {
            name.decode().lower(): values[0].decode()
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        self.posts.append((headers, request.content.read()))
        return b""


def _send_through_postfix(port: int) -> None:
    message = (
        "From: Customer <customer@outside.test>\r\n"
        "To: <shop@rail.test>\r\n"
        "Subject: =?utf-8?q?Caf=C3=A9_order_42?=\r\n"
        "Message-ID: <interop-inbound@outside.test>\r\n"
        "\r\n" + _BODY
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.sendmail("customer@outside.test", ["shop@rail.test"], message.encode())


class PostfixToWebhookTests(TestCase):
    timeout = 120

    async def test_postfix_relays_with_starttls_and_webhook_verifies(self) -> None:
        """Postfix relays over STARTTLS (its log says so); the webhook payload has the
        seed's fields, ``raw_message`` decodes to the message with Rail's Received and
        Authentication-Results (spf=pass) added, and the signature verifies both with the
        ``standardwebhooks`` package (client secret, v1) and with Rail's public key (v1a)."""
        need_postfix()
        try:
            from standardwebhooks.webhooks import Webhook
        except ImportError:
            missing("the standardwebhooks package is not installed (pip install '.[test]')")
        receiver = _Receiver()
        site = server.Site(receiver)
        site.noisy = False
        listening = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        hook_url = f"http://127.0.0.1:{listening.getHost().port}/hook"
        dns = await start_dns(
            reactor, {"outside.test": [txt_record("v=spf1 ip4:127.0.0.1 -all", ttl=60)]}
        )
        self.addCleanup(dns.stop)

        def configure(document: dict[str, Any]) -> None:
            document["inbound"]["nameservers"] = [f"127.0.0.1:{dns.port}"]

        def setup(directory: Path) -> None:
            config = load_config(directory / "rail.yaml")
            issue_client(
                config,
                ClientRequest(
                    name="shop",
                    emails=("shop@rail.test",),
                    webhook=hook_url,
                    key_type="ed25519",
                    validity=timedelta(days=1),
                ),
                directory,
                datetime.now(UTC),
                force=True,
            )

        rail = await start_rail(self, configure, setup)
        inbound_port = rail.inbound_port
        await wait_for_port(inbound_port, rail.server)
        postfix_port = free_port()
        postfix = start_postfix(
            postfix_port, ("local.invalid",), hostname="mta.outside.test", relay_to=inbound_port
        )
        self.addCleanup(postfix.stop)
        await _wait_for(lambda: _accepts(postfix_port), timeout=20)
        await deferToThread(_send_through_postfix, postfix_port)
        try:
            await _wait_for(lambda: receiver.posts, timeout=60)
        except AssertionError:
            self.fail(postfix.log.read_text(errors="replace"))
        await task.deferLater(reactor, 0.5, lambda: None)  # no second POST follows
        self.assertEqual(len(receiver.posts), 1)
        headers, body = receiver.posts[0]

        payload = json.loads(body)
        self.assertEqual(payload["from"], "customer@outside.test")
        self.assertEqual(payload["to"], ["shop@rail.test"])
        self.assertEqual(payload["subject"], _SUBJECT)
        self.assertEqual(payload["type"], "inbound")
        self.assertRegex(payload["received_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        raw = base64.b64decode(payload["raw_message"])
        self.assertEqual(payload["size"], len(raw))
        self.assertTrue(raw.endswith(_BODY.encode()), raw)
        head = raw.split(b"\r\n\r\n", 1)[0]
        self.assertTrue(head.startswith(b"Received: from mta.outside.test"), head)
        self.assertIn(b"Authentication-Results: rail.test;", head)
        self.assertIn(b"spf=pass", head)
        self.assertIn(b"Message-ID: <interop-inbound@outside.test>", head)
        self.assertEqual(payload["authentication"]["spf"]["result"], "pass")

        key = load_or_create_key(rail.directory / "data")
        Webhook(key.client_secret_text("shop")).verify(body, headers)
        verify(key.public_text, headers, body, now=time.time())
        self.assertEqual(headers["content-type"], "application/json")

        log = postfix.log.read_text(errors="replace")
        self.assertRegex(
            log,
            rf"TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:{inbound_port}",
        )
        self.assertRegex(log, r"status=sent \(250 2\.0\.0 Ok: queued as [0-9A-Z]{26}\)")
