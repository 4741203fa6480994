"""``GET /api/v1/inbound/{id}`` (owner only) and ``GET /api/v1/webhook-key`` over
Twisted's HTTP parser."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet.defer import fail
from twisted.web.resource import Resource

from rail.inbound.model import WebhookResult
from rail.store.model import StoreUnavailableError
from rail.web.inbound import InboundStatusResource
from rail.web.site import RailSite
from rail.web.webhookkey import WebhookKeyResource
from rail.webhooks.key import WebhookKey
from tests.web.test_send import NOW, APITestCase
from tests.webhooks.helpers import AUTHENTICATION, DATA, inbound

_ID = "01KMT1GZ0000000000000000AB"


class InboundWebTests(APITestCase):
    def site(self) -> RailSite:
        self.key = WebhookKey(ed25519.Ed25519PrivateKey.generate())
        v1 = Resource()
        v1.putChild(b"inbound", InboundStatusResource(self.store))
        v1.putChild(b"webhook-key", WebhookKeyResource(self.key.public_text))
        api = Resource()
        api.putChild(b"v1", v1)
        root = Resource()
        root.putChild(b"api", api)
        return RailSite(root, max_body=1024, idle_timeout=60.0, clock=self.clock)

    def spool(self) -> None:
        message = inbound(_ID, "https://hooks.example/h", received_at=NOW)
        self.successResultOf(self.store.accept_inbound(message))

    def test_owner_sees_status(self) -> None:
        """The addressed client gets 200 with the documented fields, after an attempt."""
        self.spool()
        self.clock.advance(5)
        self.successResultOf(
            self.store.record_webhook(
                WebhookResult(
                    _ID, "myapp", NOW + 5, "deferred", "HTTP 503 Service Unavailable", NOW + 35
                )
            )
        )
        response = self.request("GET", f"/api/v1/inbound/{_ID}")
        self.assertEqual(response.status, 200)
        self.assertEqual(
            response.json(),
            {
                "id": _ID,
                "status": "deferred",
                "from": "bob@example.net",
                "to": ["myapp@ataca.io"],
                "subject": "Réponse",
                "size": len(DATA),
                "received_at": "2026-03-28T12:00:00Z",
                "attempts": 1,
                "last_reply": "HTTP 503 Service Unavailable",
                "next_attempt_at": "2026-03-28T12:00:35Z",
                "updated_at": "2026-03-28T12:00:05Z",
                "authentication": AUTHENTICATION,
                "body_purged_at": None,
            },
        )

    def test_purged(self) -> None:
        """After its job is delivered, retention first drops the message's bytes (the
        status says when) and later its record: the id then answers 404 MESSAGE_EXPIRED."""
        self.spool()
        self.successResultOf(
            self.store.record_webhook(WebhookResult(_ID, "myapp", NOW + 5, "delivered", "HTTP 200"))
        )
        self.successResultOf(self.store.purge(NOW + 86400, NOW + 10, NOW, 10))
        body = self.request("GET", f"/api/v1/inbound/{_ID}").json()
        self.assertEqual(
            (body["status"], body["size"], body["body_purged_at"]),
            ("delivered", len(DATA), "2026-03-29T12:00:00Z"),
        )
        self.successResultOf(self.store.purge(NOW + 30 * 86400, NOW + 10, NOW + 10, 10))
        response = self.request("GET", f"/api/v1/inbound/{_ID}")
        self.assertEqual(response.error(), (404, "MESSAGE_EXPIRED"))

    def test_others_and_malformed_ids_look_missing(self) -> None:
        """Another client's message, an unknown id and a malformed id answer the same
        404 body."""
        self.spool()
        other = self.request("GET", f"/api/v1/inbound/{_ID}", certificate=self.other_certificate)
        unknown = self.request("GET", "/api/v1/inbound/01KMT1GZ0000000000000000ZZ")
        malformed = self.request("GET", "/api/v1/inbound/not-an-id")
        for response in (other, unknown, malformed):
            self.assertEqual(response.error(), (404, "NOT_FOUND"))
            self.assertEqual(response.body, other.body)

    def test_certificate_required(self) -> None:
        """Without a client certificate: 401."""
        self.spool()
        response = self.request("GET", f"/api/v1/inbound/{_ID}", certificate=None)
        self.assertEqual(response.error(), (401, "CLIENT_CERTIFICATE_REQUIRED"))

    def test_store_unavailable(self) -> None:
        """A store failure answers 503 QUEUE_UNAVAILABLE with Retry-After."""
        self.store.inbound_status = lambda *_: fail(StoreUnavailableError("down"))
        response = self.request("GET", f"/api/v1/inbound/{_ID}")
        self.assertEqual(response.error(), (503, "QUEUE_UNAVAILABLE"))
        self.assertEqual(response.headers["retry-after"], "60")

    def test_webhook_key_without_certificate(self) -> None:
        """The public key is served to anyone, in the documented document."""
        response = self.request("GET", "/api/v1/webhook-key", certificate=None)
        self.assertEqual(response.status, 200)
        self.assertEqual(
            response.json(),
            {
                "algorithm": "ed25519",
                "public_key": self.key.public_text,
                "format": "standard-webhooks",
            },
        )
        self.assertEqual(
            self.request("POST", "/api/v1/webhook-key", certificate=None).error(),
            (405, "METHOD_NOT_ALLOWED"),
        )
