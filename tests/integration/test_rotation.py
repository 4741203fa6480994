"""Certificate rotation against the running service: one client, two valid certificates.

The name is the identity: a message sent with the old certificate is the new one's to
look up, the webhook secret is the same, and revoking the old certificate by serial
leaves the new one working.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks

from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client, revoke
from rail.shared.registry import registry_source
from tests.integration.test_https import _HANDSHAKE_REFUSED, _RunningRail


class RotationTests(_RunningRail):
    extra_config: dict[str, Any] = {"delivery": {"hold": True}}

    def issue(self, out: Path) -> tuple[tuple[Path, Path], int]:
        out.mkdir(exist_ok=True)
        request = ClientRequest(
            name="app",
            emails=("app@rail.test",),
            webhook="https://app.example/hook",
            key_type="ed25519",
            validity=timedelta(days=30),
        )
        issued = issue_client(
            self.config, request, out, datetime.now(UTC), source=registry_source(self.config)
        )
        return (issued.certificate_path, issued.key_path), issued.record.serial

    @inlineCallbacks
    def test_two_certificates_one_client(self) -> Any:
        """With old and new certificates valid at once, a message sent with the old one
        is visible to the new one and the webhook secret is the same; after the old one
        is revoked by serial, it is refused and the new one still sends."""
        old, old_serial = self.issue(self.base / "old")
        body = json.dumps(
            {"from": "app@rail.test", "to": ["x@example.com"], "subject": "s", "body_text": "t"}
        ).encode()
        headers = {"Content-Type": "application/json"}
        sent = yield self.request(
            "POST", "/api/v1/send", cert=old, body=body, extra_headers=headers
        )
        self.assertEqual(sent.status, 202, sent.body)
        message_id = json.loads(sent.body)["id"]
        secret = yield self.request("GET", "/api/v1/webhook-secret", cert=old)

        new, _ = self.issue(self.base / "new")
        status = yield self.request("GET", f"/api/v1/messages/{message_id}", cert=new)
        self.assertEqual(status.status, 200, status.body)
        self.assertEqual(json.loads(status.body)["id"], message_id)
        again = yield self.request("GET", "/api/v1/webhook-secret", cert=new)
        self.assertEqual((again.status, again.body), (200, secret.body))

        revoke(
            self.config,
            format(old_serial, "x"),
            datetime.now(UTC),
            source=registry_source(self.config),
        )
        yield self.service.getServiceNamed("revocations").refresh()
        yield self.assertFailure(self.request("GET", "/api/who", cert=old), *_HANDSHAKE_REFUSED)
        sent = yield self.request(
            "POST", "/api/v1/send", cert=new, body=body, extra_headers=headers
        )
        self.assertEqual(sent.status, 202, sent.body)
