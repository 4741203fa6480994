"""A real webhook POST checked with the ``standardwebhooks`` package, before and after a
secret rotation through the admin API: mail arrives on Rail's port 25, Rail POSTs it to a
twisted.web receiver on loopback, and the application verifies it with the secret it got
from ``GET /api/v1/webhook-secret`` over mutual TLS (and with the public key, ``v1a``)."""

from __future__ import annotations

import json
import smtplib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from twisted.internet import reactor, task
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from rail.service import build_service
from rail.shared.registry import registry_source
from rail.webhooks.signing import verify
from tests.integration.tlsclient import https_request
from tests.integration.webhookrig import webhook_rig


def _send(port: int, subject: str) -> None:
    message = f"From: <c@outside.test>\r\nTo: <shop@rail.test>\r\nSubject: {subject}\r\n\r\nhi\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.sendmail("c@outside.test", ["shop@rail.test"], message.encode())


class WebhookSecretTests(TestCase):
    timeout = 60

    async def test_verify_then_rotate(self) -> None:
        """The POST verifies with ``standardwebhooks`` and the secret from
        ``GET /api/v1/webhook-secret``; after an admin rotation with an overlap, the next
        POST verifies with the new secret and with the old one, and the endpoint gives
        the new one. An admin certificate, which has no webhooks, gets no secret."""
        rig = await webhook_rig(self)
        receiver, base, config = rig.receiver, rig.base, rig.config
        now = datetime.now(UTC)
        for name, admin, hook in (
            ("shop", False, rig.hook),
            ("ops", True, None),
        ):
            request = ClientRequest(
                name=name,
                emails=() if admin else ("shop@rail.test",),
                webhook=hook,
                key_type="ed25519",
                validity=timedelta(days=1),
                admin=admin,
            )
            issue_client(config, request, base, now, source=registry_source(config))
        service = build_service(config, reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        https = service.getServiceNamed("https").port.getHost().port
        inbound = service.getServiceNamed("inbound").port.getHost().port
        ca = config.data_dir / "ca" / "ca.crt"

        def api(method: str, path: str, name: str, body: bytes = b"") -> Any:
            pair = (base / f"{name}.crt", base / f"{name}.key")
            return deferToThread(https_request, https, method, path, ca, cert=pair, body=body)

        async def post(subject: str) -> tuple[dict[str, str], bytes]:
            count = len(receiver.posts)
            await deferToThread(_send, inbound, subject)
            while len(receiver.posts) == count:
                await task.deferLater(reactor, 0.05, lambda: None)
            return receiver.posts[-1]

        answer = await api("GET", "/api/v1/webhook-secret", "shop")
        old = json.loads(answer.body)["secret"]
        key = json.loads((await api("GET", "/api/v1/webhook-key", "shop")).body)["public_key"]
        headers, body = await post("first")
        self.assertEqual(Webhook(old).verify(body, headers)["to"], ["shop@rail.test"])
        verify(key, headers, body, now=time.time())

        admin = await api("GET", "/api/v1/webhook-secret", "ops")
        self.assertEqual(
            (admin.status, json.loads(admin.body)["error"]["code"]), (403, "NOT_A_CLIENT")
        )
        refused = await api("POST", "/api/v1/admin/clients/shop/webhook-secret/rotate", "shop")
        self.assertEqual(refused.status, 403)
        rotated = await api(
            "POST",
            "/api/v1/admin/clients/shop/webhook-secret/rotate",
            "ops",
            json.dumps({"overlap": "1h"}).encode(),
        )
        self.assertEqual(rotated.status, 200, rotated.body)
        new = json.loads(rotated.body)["secret"]
        self.assertNotEqual(new, old)
        answer = await api("GET", "/api/v1/webhook-secret", "shop")
        self.assertEqual(json.loads(answer.body)["secret"], new)
        headers, body = await post("second")
        Webhook(new).verify(body, headers)
        Webhook(old).verify(body, headers)
        verify(key, headers, body, now=time.time())
        with self.assertRaises(WebhookVerificationError):
            Webhook("whsec_" + "A" * 43 + "=").verify(body, headers)
        unknown = await api("POST", "/api/v1/admin/clients/nobody/webhook-secret/rotate", "ops")
        self.assertEqual(unknown.status, 404)
