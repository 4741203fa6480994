"""The admin API, the client listing and the /stats access policy, over Twisted's HTTP
parser with real certificates from a test CA and a MemoryStore."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from OpenSSL.crypto import X509
from twisted.web.resource import Resource

from rail.delivery.stats import DeliveryStats
from rail.pki.issue import ClientRequest, issue_client_certificate
from rail.pki.keys import generate_private_key
from rail.store.model import IdempotencyKey, JobResult, NewMessage, RecipientUpdate
from rail.web.admin import AdminResource
from rail.web.messagelist import MessagesResource
from rail.web.site import RailSite
from rail.web.stats import Metrics, Stats
from rail.web.statsaccess import StatsAccess, is_loopback
from tests.pki.helpers import NOW as CERT_NOW
from tests.pki.helpers import make_ca
from tests.store.test_deliveries import _dsn_for
from tests.web.test_messages import _message
from tests.web.test_send import NOW, APITestCase


class _AdminSite(APITestCase):
    public_stats = "loopback"

    def setUp(self) -> None:
        super().setUp()
        ca = make_ca()
        key = generate_private_key("ed25519")
        request = ClientRequest("ops", (), None, "ed25519", timedelta(days=30), admin=True)
        self.admin = X509.from_cryptography(
            issue_client_certificate(ca, request, key.public_key(), CERT_NOW)
        )

    def site(self) -> RailSite:
        v1 = Resource()
        v1.putChild(b"messages", MessagesResource(self.store))
        v1.putChild(b"admin", AdminResource(self.store, self.clock, _dsn_for))
        api = Resource()
        api.putChild(b"v1", v1)
        root = Resource()
        root.putChild(b"api", api)
        stats = DeliveryStats(NOW)
        policy: Any = self.public_stats
        root.putChild(b"stats", StatsAccess(Stats(stats, self.store, self.clock), policy))
        root.putChild(b"metrics", StatsAccess(Metrics(stats, self.store), policy))
        return RailSite(root, max_body=4 * 1024 * 1024, idle_timeout=60.0, clock=self.clock)

    def stored(self, client: str = "myapp", received_at: float = NOW) -> NewMessage:
        message = _message(client, received_at)
        self.successResultOf(self.store.accept(message))
        return message

    def admin_request(self, method: str, path: str, body: Any = None) -> Any:
        raw = b"" if body is None else json.dumps(body).encode()
        return self.request(method, path, raw, certificate=self.admin)


class AccessTests(_AdminSite):
    def test_no_certificate_is_401(self) -> None:
        """Every admin endpoint answers 401 CLIENT_CERTIFICATE_REQUIRED without a
        certificate, before looking at anything else."""
        message = self.stored()
        for method, path in [
            ("GET", "/api/v1/admin/messages"),
            ("GET", f"/api/v1/admin/messages/{message.id}"),
            ("POST", f"/api/v1/admin/messages/{message.id}/hold"),
            ("POST", "/api/v1/admin/retry"),
        ]:
            response = self.request(method, path, certificate=None)
            self.assertEqual(response.status, 401, path)
            self.assertEqual(response.json()["error"]["code"], "CLIENT_CERTIFICATE_REQUIRED")
        self.assertFalse(self.store.held)

    def test_client_certificate_is_403(self) -> None:
        """A client (application) certificate gets 403 ADMIN_REQUIRED and changes
        nothing."""
        message = self.stored()
        for method, path in [
            ("GET", "/api/v1/admin/messages"),
            ("GET", f"/api/v1/admin/messages/{message.id}"),
            ("POST", f"/api/v1/admin/messages/{message.id}/delete"),
            ("POST", "/api/v1/admin/retry"),
        ]:
            response = self.request(method, path)
            self.assertEqual(response.status, 403, path)
            self.assertEqual(response.json()["error"]["code"], "ADMIN_REQUIRED")
        detail = self.successResultOf(self.store.show_message(message.id))
        self.assertEqual(detail.status.status, "queued")


class AdminAPITests(_AdminSite):
    def test_list_and_filters(self) -> None:
        """The listing is newest first with each message's status; filters (client,
        older_than, sender) and bad parameters are checked."""
        first = self.stored("myapp", NOW - 7200)
        second = self.stored("otherapp", NOW)
        body = self.admin_request("GET", "/api/v1/admin/messages").json()
        self.assertEqual([m["id"] for m in body["messages"]], [second.id, first.id])
        self.assertIsNone(body["next_cursor"])
        self.assertEqual(body["messages"][0]["status"], "queued")
        body = self.admin_request("GET", "/api/v1/admin/messages?client=myapp").json()
        self.assertEqual([m["id"] for m in body["messages"]], [first.id])
        body = self.admin_request("GET", "/api/v1/admin/messages?older_than=1h").json()
        self.assertEqual([m["id"] for m in body["messages"]], [first.id])
        query = "sender=noreply@ataca.io"
        body = self.admin_request("GET", f"/api/v1/admin/messages?{query}").json()
        self.assertEqual(len(body["messages"]), 2)
        body = self.admin_request("GET", "/api/v1/admin/messages?sender=x@y.example").json()
        self.assertEqual(body["messages"], [])
        for query in ("status=lost", "older_than=5", "cursor=x", "limit=0", "colour=blue"):
            response = self.admin_request("GET", f"/api/v1/admin/messages?{query}")
            self.assertEqual(response.status, 400, query)
            self.assertEqual(response.json()["error"]["code"], "INVALID_REQUEST")

    def test_show(self) -> None:
        """show has envelope, client, headers, per-recipient state and remote MTA."""
        message = self.stored()
        self.successResultOf(
            self.store.record(
                JobResult(
                    message.id, NOW, (RecipientUpdate(0, "deferred", "451 busy", "mx.x", NOW + 60),)
                )
            )
        )
        body = self.admin_request("GET", f"/api/v1/admin/messages/{message.id}").json()
        self.assertEqual((body["id"], body["client"], body["held"]), (message.id, "myapp", False))
        self.assertEqual(body["headers"], [["subject", "x"]])
        self.assertEqual(
            [(r["status"], r["last_reply"], r["remote_mta"]) for r in body["recipients"]],
            [("deferred", "451 busy", "mx.x"), ("queued", None, None)],
        )
        self.assertEqual(
            body["recipients"][0]["history"],
            [
                {
                    "at": "2026-03-28T12:00:00Z",
                    "status": "deferred",
                    "reply": "451 busy",
                    "remote_mta": "mx.x",
                }
            ],
        )
        self.assertEqual(body["recipients"][1]["history"], [])
        missing = self.admin_request("GET", "/api/v1/admin/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV")
        self.assertEqual(missing.status, 404)

    def test_actions(self) -> None:
        """hold, release, retry, delete and bounce answer 200, or 404/409 with a code
        when they cannot apply; delete needs a reason."""
        message = self.stored()
        base = f"/api/v1/admin/messages/{message.id}"
        self.assertEqual(self.admin_request("POST", f"{base}/hold", {"reason": "x"}).status, 200)
        again = self.admin_request("POST", f"{base}/hold")
        self.assertEqual((again.status, again.json()["error"]["code"]), (409, "ALREADY_HELD"))
        shown = self.admin_request("GET", base).json()
        self.assertEqual((shown["status"], shown["held"]), ("held", True))
        self.assertEqual(self.admin_request("POST", f"{base}/release").status, 200)
        retried = self.admin_request("POST", f"{base}/retry").json()
        self.assertEqual(retried, {"id": message.id, "retried": 0})
        no_reason = self.admin_request("POST", f"{base}/delete")
        self.assertEqual(no_reason.status, 400)
        deleted = self.admin_request("POST", f"{base}/delete", {"reason": "spam run"})
        self.assertEqual(deleted.json(), {"id": message.id, "action": "delete"})
        gone = self.admin_request("POST", f"{base}/bounce")
        self.assertEqual((gone.status, gone.json()["error"]["code"]), (409, "NOT_PENDING"))
        other = self.stored()
        bounced = self.admin_request("POST", f"/api/v1/admin/messages/{other.id}/bounce")
        self.assertEqual(bounced.status, 200)
        self.assertEqual(len(self.store.messages), 3)  # the DSN was queued
        missing = self.admin_request(
            "POST", "/api/v1/admin/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV/hold"
        )
        self.assertEqual((missing.status, missing.json()["error"]["code"]), (404, "NOT_FOUND"))

    def test_retry_many(self) -> None:
        """POST /api/v1/admin/retry takes {"all": true} or {"domain": D}, nothing else."""
        message = self.stored()
        self.successResultOf(
            self.store.record(
                JobResult(
                    message.id,
                    NOW,
                    (RecipientUpdate(0, "deferred", "451 busy", None, NOW + 600),),
                )
            )
        )
        body = self.admin_request("POST", "/api/v1/admin/retry", {"domain": "EXAMPLE.com"}).json()
        self.assertEqual(body, {"retried": 1})
        self.assertEqual(self.admin_request("POST", "/api/v1/admin/retry", {"all": True}).json(),
                         {"retried": 0})  # fmt: skip
        for bad in ({}, {"all": True, "domain": "x"}, {"all": False}, {"every": 1}):
            self.assertEqual(self.admin_request("POST", "/api/v1/admin/retry", bad).status, 400)


class ClientListingTests(_AdminSite):
    def test_lists_own_messages_only(self) -> None:
        """GET /api/v1/messages lists the caller's messages only, newest first, and
        filters by recipient, status, time range and request_id."""
        mine_old = self.stored("myapp", NOW - 3600)
        self.stored("otherapp", NOW)
        tagged = _message("myapp", NOW)
        self.successResultOf(self.store.accept(tagged, IdempotencyKey("order-7", "f")))
        body = self.request("GET", "/api/v1/messages").json()
        self.assertEqual([m["id"] for m in body["messages"]], [tagged.id, mine_old.id])
        body = self.request("GET", "/api/v1/messages?request_id=order-7").json()
        self.assertEqual([m["id"] for m in body["messages"]], [tagged.id])
        body = self.request("GET", "/api/v1/messages?until=2026-03-28T11:30:00Z").json()
        self.assertEqual([m["id"] for m in body["messages"]], [mine_old.id])
        body = self.request("GET", "/api/v1/messages?since=2026-03-28T11:30:00%2B00:00").json()
        self.assertEqual([m["id"] for m in body["messages"]], [tagged.id])
        body = self.request("GET", "/api/v1/messages?recipient=carl@example.com&status=queued")
        self.assertEqual(len(body.json()["messages"]), 2)
        page = self.request("GET", "/api/v1/messages?limit=1").json()
        self.assertEqual(page["next_cursor"], tagged.id)
        rest = self.request("GET", f"/api/v1/messages?limit=1&cursor={tagged.id}").json()
        self.assertEqual([m["id"] for m in rest["messages"]], [mine_old.id])
        self.assertEqual(self.request("GET", "/api/v1/messages?since=yesterday").status, 400)
        self.assertEqual(self.request("GET", "/api/v1/messages", certificate=None).status, 401)


class StatsAccessTests(_AdminSite):
    def test_loopback_policy_from_elsewhere(self) -> None:
        """Under ``loopback``, a request from a non-loopback address needs an admin
        certificate: none is 401, a client's 403, an admin's 200."""
        for path in ("/stats", "/metrics"):
            self.assertEqual(self.request("GET", path, certificate=None).status, 401)
            self.assertEqual(self.request("GET", path).status, 403)
            self.assertEqual(self.request("GET", path, certificate=self.admin).status, 200)

    def test_is_loopback(self) -> None:
        """127.0.0.0/8, ::1 and IPv4-mapped loopback are loopback; others are not."""
        for host in ("127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"):
            self.assertTrue(is_loopback(host), host)
        for host in ("192.0.2.7", "::ffff:192.0.2.7", "2001:db8::1", "localhost", ""):
            self.assertFalse(is_loopback(host), host)


class PublicStatsTests(_AdminSite):
    public_stats = "public"

    def test_public(self) -> None:
        """Under ``public``, anyone may read /stats and /metrics."""
        self.assertEqual(self.request("GET", "/stats", certificate=None).status, 200)
        self.assertEqual(self.request("GET", "/metrics", certificate=None).status, 200)


class DomainsTests(_AdminSite):
    """``/api/v1/admin/domains``: rail doctor's report, for admins, one run shared."""

    def setUp(self) -> None:
        super().setUp()
        self.runs: list[tuple[str | None, Any]] = []

    def report(self, domain: str | None) -> Any:
        from twisted.internet.defer import Deferred

        running: Deferred[dict[str, Any]] = Deferred()
        self.runs.append((domain, running))
        return running

    def site(self) -> RailSite:
        # One resource for every connection, as in a running server.
        if not hasattr(self, "_admin"):
            self._admin = AdminResource(self.store, self.clock, _dsn_for, self.report)
        site = super().site()
        site.resource.children[b"api"].children[b"v1"].putChild(b"admin", self._admin)
        return site

    def test_requests_share_one_run(self) -> None:
        """Two admins asking at once start one doctor run and both get its report; a
        request for another domain starts its own."""
        first = self.connect(self.admin)
        second = self.connect(self.admin)
        other = self.connect(self.admin)
        first.send("GET", "/api/v1/admin/domains?domain=rail.test", b"")
        second.send("GET", "/api/v1/admin/domains?domain=rail.test", b"")
        other.send("GET", "/api/v1/admin/domains", b"")
        self.assertEqual([domain for domain, _ in self.runs], ["rail.test", None])
        self.runs[0][1].callback({"ok": True, "checks": []})
        self.runs[1][1].callback({"ok": False, "checks": []})
        self.assertEqual(
            [first.response().json()["ok"], second.response().json()["ok"]], [True, True]
        )
        self.assertEqual(other.response().json()["ok"], False)

    def test_not_local_is_404_and_client_is_403(self) -> None:
        """A domain the doctor does not know is 404 NOT_A_LOCAL_DOMAIN; a client
        certificate never starts a run."""
        refused = self.request("GET", "/api/v1/admin/domains")
        self.assertEqual(refused.status, 403)
        self.assertEqual(self.runs, [])
        asking = self.connect(self.admin)
        asking.send("GET", "/api/v1/admin/domains?domain=elsewhere.example", b"")
        self.runs[0][1].errback(LookupError("elsewhere.example is not a local domain"))
        response = asking.response()
        self.assertEqual(response.status, 404)
        self.assertEqual(response.json()["error"]["code"], "NOT_A_LOCAL_DOMAIN")
