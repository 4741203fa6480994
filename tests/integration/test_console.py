"""``/console/`` on a running server over real HTTPS with client certificates (mTLS):
who gets a page, the headers every page carries, search, the message trail, and the CSRF
token every action needs before it is done and recorded in the audit log."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cryptography import x509
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks

from rail.config import load_config
from rail.events.model import EVENT_TYPES, Event
from rail.events.subscriptions import Subscription, Subscriptions
from rail.inbound.model import InboundMessage, WebhookTarget
from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from rail.shared.registry import registry_source
from rail.store import suppressions
from rail.store.events import insert_events
from rail.store.ids import new_message_id
from rail.store.model import JobResult, RecipientUpdate
from tests.integration.test_queue_cli import _RunningRail

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def issue_admin(config_path: Path, out: Path, name: str = "ops") -> tuple[Path, Path]:
    """An admin certificate issued (and recorded in the registry) as ``rail certs issue
    --admin`` does; returns (certificate, key)."""
    config = load_config(config_path)
    request = ClientRequest(name, (), None, "ed25519", timedelta(days=10), admin=True)
    out.mkdir(parents=True, exist_ok=True)
    issued = issue_client(config, request, out, datetime.now(UTC), source=registry_source(config))
    return issued.certificate_path, issued.key_path


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def csrf_of(body: bytes) -> str:
    """The CSRF token of the (one) form on a page."""
    found = re.search(rb'name="csrf" value="([0-9a-f]{64})"', body)
    assert found is not None, body
    return found.group(1).decode()


class ConsoleTests(_RunningRail):
    def setUp(self) -> None:
        super().setUp()
        self.admin = issue_admin(self.config_path, self.base / "admin")
        self.store = self.service.getServiceNamed("store").store

    def get(self, path: str, cert: Any = None) -> Any:
        return self.request("GET", path, cert=self.admin if cert is None else cert)

    def post(self, path: str, fields: dict[str, str], cert: Any = None) -> Any:
        return self.request(
            "POST",
            path,
            cert=self.admin if cert is None else cert,
            body=urlencode(fields).encode(),
            extra_headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    @inlineCallbacks
    def test_only_admin_certificates(self) -> Any:
        """An application's certificate and no certificate both get a 403 HTML page that
        says how to get an admin certificate; an admin certificate gets the overview."""
        for cert in (self.app.pair, None):
            response = yield self.request("GET", "/console/", cert=cert)
            self.assertEqual(response.status, 403)
            self.assertTrue(response.headers["content-type"].startswith("text/html"))
            self.assertIn(b"rail certs issue --admin", response.body)
            self.assertEqual(response.headers["content-security-policy"], _CSP)
        response = yield self.get("/console/")
        self.assertEqual(response.status, 200, response.body)
        self.assertIn(b"Recipients by status", response.body)
        self.assertIn(b"<dt>Server certificate expires</dt>", response.body)
        self.assertIn(
            b"<dt>Quarantined since start</dt><dd>inbound 0, outbound 0</dd>", response.body
        )

    @inlineCallbacks
    def test_security_headers(self) -> Any:
        """Every page carries the CSP without unsafe-inline, nosniff, no-store and no
        referrer; the stylesheet and the Domains page's script (its only one, loaded by
        src; the records are in selectable blocks without it) are served from the
        package."""
        response = yield self.get("/console/messages")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["content-security-policy"], _CSP)
        self.assertEqual(response.headers["x-content-type-options"], "nosniff")
        self.assertEqual(response.headers["cache-control"], "no-store")
        self.assertEqual(response.headers["referrer-policy"], "no-referrer")
        self.assertNotIn(b"<script", response.body)
        self.assertNotIn(b"style=", response.body)
        domains = yield self.get("/console/domains")
        self.assertEqual(domains.status, 200)
        self.assertIn(b"<caption>DKIM selectors signing now", domains.body)
        self.assertIn(b"<td>rail.test</td>", domains.body)
        self.assertIn(b"_domainkey", domains.body)
        self.assertIn(b"Run the checks", domains.body)
        css = yield self.get("/console/static/console.css")
        self.assertEqual(css.headers["content-type"], "text/css; charset=utf-8")
        self.assertIn(b"svg.chart", css.body)
        # The Domains page's script: a same-origin file, no inline code anywhere.
        self.assertIn(
            b'<script src="/console/static/console.js" defer="defer"></script>', domains.body
        )
        self.assertEqual(domains.body.count(b"<script"), 1)
        self.assertIn(
            b'<pre tabindex="0" class="records" data-copy="Copy the records of rail.test">',
            domains.body,
        )
        script = yield self.get("/console/static/console.js")
        self.assertEqual(script.status, 200)
        self.assertEqual(script.headers["content-type"], "text/javascript; charset=utf-8")
        self.assertEqual(script.headers["content-security-policy"], _CSP)
        self.assertIn(b"navigator.clipboard.writeText", script.body)
        missing = yield self.get("/console/static/other.js")
        self.assertEqual(missing.status, 404)

    @inlineCallbacks
    def test_search_and_trail(self) -> Any:
        """A search by recipient finds its message only; the overview lists its domain as
        deferring; the message page shows its
        attempts (MX, reply) and headers, escaped by the template, and the events stored
        for the app."""
        wanted = yield self.send("bob@example.com")
        other = yield self.send("carl@example.org")
        found = yield self.get("/console/messages?" + urlencode({"recipient": "bob@example.com"}))
        self.assertEqual(found.status, 200)
        self.assertIn(wanted.encode(), found.body)
        self.assertNotIn(other.encode(), found.body)
        now = self.store_clock()
        yield self.store.record(
            JobResult(
                wanted,
                now,
                (RecipientUpdate(0, "deferred", "451 4.7.1 <try> later", "mx.example.com", now),),
            )
        )
        overview = yield self.get("/console/")
        self.assertIn(
            b"<td>example.com</td><td>1</td><td>451 4.7.1 &lt;try&gt; later</td>", overview.body
        )
        page = yield self.get(f"/console/messages/{wanted}")
        self.assertEqual(page.status, 200, page.body)
        self.assertEqual(page.headers["cache-control"], "no-store")
        self.assertIn(b"mx.example.com", page.body)
        self.assertIn(b"451 4.7.1 &lt;try&gt; later", page.body)
        self.assertIn(b"<td>subject</td><td>hello</td>", page.body)
        # An event stored for the app (subscriptions given here: the server's own come
        # from the registry, where this test's app has none).
        event = Event(
            "message.deferred", "app", wanted, "bob@example.com", {"mx": "mx.example.com"}
        )
        everything = Subscriptions({"app": Subscription(frozenset(EVENT_TYPES))})
        yield self.store._run(lambda c: (insert_events(c, [event], now, everything), 0), True)
        page = yield self.get(f"/console/messages/{wanted}")
        self.assertIn(b"<td>message.deferred</td><td>bob@example.com</td>", page.body)
        missing = yield self.get("/console/messages/01J0000000000000000000000A")
        self.assertEqual(missing.status, 404)

    def store_clock(self) -> float:
        return float(reactor.seconds())

    @inlineCallbacks
    def test_actions_need_the_token(self) -> Any:
        """A POST without a token, with a wrong one or with another action's token is
        refused (403) and does nothing; the token of the confirmation page works, answers
        303 to the message page, and the action is in the audit log under the admin."""
        message_id = yield self.send("bob@example.com")
        target = f"/console/messages/{message_id}/hold"
        confirm = yield self.get(f"/console/messages/{message_id}/retry")
        retry_token = csrf_of(confirm.body)
        for fields in ({}, {"csrf": "0" * 64}, {"csrf": retry_token}):
            refused = yield self.post(target, fields)
            self.assertEqual(refused.status, 403, fields)
        detail = yield self.store.show_message(message_id)
        self.assertEqual((detail.held, detail.actions), (False, ()))
        other = yield self.request(
            "GET", f"/console/messages/{message_id}/hold", cert=self.app.pair
        )
        self.assertEqual(other.status, 403)
        confirm = yield self.get(target)
        self.assertIn(b"Confirm: Hold", confirm.body)
        done = yield self.post(target, {"csrf": csrf_of(confirm.body), "reason": "looks odd"})
        self.assertEqual(done.status, 303, done.body)
        location = done.headers["location"]
        self.assertTrue(location.startswith(f"/console/messages/{message_id}?"))
        page = yield self.get(location)
        self.assertIn(b"Held: no delivery until released.", page.body)
        self.assertIn(b"looks odd", page.body)
        detail = yield self.store.show_message(message_id)
        self.assertTrue(detail.held)
        self.assertEqual(
            [(a.actor, a.action, a.reason) for a in detail.actions], [("ops", "hold", "looks odd")]
        )

    @inlineCallbacks
    def test_delete_needs_a_reason(self) -> Any:
        """Deleting without a reason is answered with the confirmation page again (400),
        and the message stays pending."""
        message_id = yield self.send("bob@example.com")
        target = f"/console/messages/{message_id}/delete"
        confirm = yield self.get(target)
        response = yield self.post(target, {"csrf": csrf_of(confirm.body)})
        self.assertEqual(response.status, 400)
        self.assertIn(b"Deleting needs a reason.", response.body)
        detail = yield self.store.show_message(message_id)
        self.assertEqual(detail.actions, ())

    @inlineCallbacks
    def test_remove_suppressed_address(self) -> Any:
        """The clients page lists the certificates and a client's suppressed addresses;
        removing one takes the confirmation page's token and takes it off the list."""
        entry = suppressions.Suppression("app", "gone@example.com", "manual", "api", 1000.0)
        yield self.store.add_suppression(entry)
        page = yield self.get("/console/clients?client=app")
        self.assertIn(b"gone@example.com", page.body)
        self.assertIn(b"<td>ops</td><td>admin</td>", page.body)
        query = urlencode({"client": "app", "address": "gone@example.com"})
        confirm = yield self.get(f"/console/suppressions/remove?{query}")
        fields = {"client": "app", "address": "gone@example.com"}
        refused = yield self.post("/console/suppressions/remove", fields)
        self.assertEqual(refused.status, 403)
        done = yield self.post(
            "/console/suppressions/remove", {**fields, "csrf": csrf_of(confirm.body)}
        )
        self.assertEqual(done.status, 303)
        listed = yield self.store.get_suppression("app", "gone@example.com")
        self.assertIsNone(listed)
        # What the POST refuses (over 320 characters) gets no confirmation page either.
        long = urlencode({"client": "app", "address": "x" * 321 + "@example.com"})
        offered = yield self.get(f"/console/suppressions/remove?{long}")
        self.assertEqual(offered.status, 404)

    @inlineCallbacks
    def test_inbound_page_and_retry(self) -> Any:
        """The Inbound page lists recent inbound mail with its authentication results and
        webhook jobs; retrying takes the confirmation page's token and makes the pending
        job due now."""
        now = float(reactor.seconds())
        message = InboundMessage(
            id=new_message_id(now),
            sender="someone@remote.example",
            # Loopback: the webhook client refuses it without a connection attempt.
            targets=(WebhookTarget("app", "https://127.0.0.1:1/hook", ("info@rail.test",)),),
            data=b"Received: x\r\nSubject: hi\r\n\r\nbody\r\n",
            received_at=now,
            subject="<hello>",
            authentication={"spf": {"result": "pass"}, "dkim": [{"result": "none"}]},
            bounce_allowed=True,
        )
        yield self.store.accept_inbound(message)
        page = yield self.get("/console/inbound")
        self.assertEqual(page.status, 200)
        self.assertIn(message.id.encode(), page.body)
        self.assertIn(b"&lt;hello&gt;", page.body)
        self.assertIn(b"spf=pass dkim=none", page.body)
        target = f"/console/inbound/{message.id}/retry"
        refused = yield self.post(target, {})
        self.assertEqual(refused.status, 403)
        confirm = yield self.get(target)
        done = yield self.post(target, {"csrf": csrf_of(confirm.body)})
        self.assertEqual(done.status, 303)
        self.assertTrue(done.headers["location"].startswith("/console/inbound?retried="))

    @inlineCallbacks
    def test_search_fields(self) -> Any:
        """An empty search lists the newest messages; metadata (key=value), tag and the
        received time (UTC) narrow it; an unusable field is a 400 page saying which."""
        body = json.dumps(
            {
                "from": "app@rail.test",
                "to": ["dan@example.com"],
                "subject": "s",
                "body_text": "b",
                "tag": "receipts",
                "metadata": {"order": "42"},
            }
        ).encode()
        sent = yield self.request(
            "POST",
            "/api/v1/send",
            cert=self.app.pair,
            body=body,
            extra_headers={"Content-Type": "application/json"},
        )
        tagged = json.loads(sent.body)["id"]
        plain = yield self.send("erin@example.com")
        every = yield self.get("/console/messages")
        self.assertIn(tagged.encode(), every.body)
        self.assertIn(plain.encode(), every.body)
        for fields in ({"metadata": "order=42"}, {"tag": "receipts"}):
            found = yield self.get("/console/messages?" + urlencode(fields))
            self.assertIn(tagged.encode(), found.body, fields)
            self.assertNotIn(plain.encode(), found.body, fields)
        future = yield self.get("/console/messages?received_after=2999-01-01T00:00")
        self.assertNotIn(tagged.encode(), future.body)
        past = yield self.get("/console/messages?received_before=2999-01-01T00:00")
        self.assertIn(tagged.encode(), past.body)
        for fields, says in (
            ({"received_after": "yesterday"}, b"Received after: a date and time"),
            ({"metadata": "no equals sign"}, b"Metadata: key=value"),
            ({"status": "lost"}, b"Status: pick one from the list."),
        ):
            refused = yield self.get("/console/messages?" + urlencode(fields))
            self.assertEqual(refused.status, 400, fields)
            self.assertIn(says, refused.body)

    @inlineCallbacks
    def test_revoke_certificate(self) -> Any:
        """Revoking a certificate from the clients page takes the confirmation page's
        token, marks it revoked in the registry (and the CRL the server follows), and a
        second revocation is refused (409) with the registry's reason."""
        shop = issue_admin(self.config_path, self.base / "shop", name="shop")
        serial = format(load_cert(shop[0]).serial_number, "x")
        target = f"/console/certificates/{serial}/revoke"
        refused = yield self.post(target, {})
        self.assertEqual(refused.status, 403)
        confirm = yield self.get(target)
        self.assertIn(b"Confirm: revoke", confirm.body)
        token = csrf_of(confirm.body)
        done = yield self.post(target, {"csrf": token})
        self.assertEqual(done.status, 303, done.body)
        page = yield self.get(done.headers["location"])
        self.assertIn(f"Revoked certificate {serial}".encode(), page.body)
        self.assertIn(f"<td>{serial}</td><td>revoked</td>".encode(), page.body)
        again = yield self.post(target, {"csrf": token})
        self.assertEqual(again.status, 409)
        self.assertIn(b"already revoked", again.body)
