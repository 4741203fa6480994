"""Issuing certificates and rotating DKIM keys through the console's resource, over
Twisted's HTTP parser with real certificates and fakes for the thread work: the two
POSTs of issuing (check, then confirmed), the page with the key, the downloads, and
rotation's redirect and refusal."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from rail.console.domainpages import DKIMSelectors
from rail.console.issuing import Issued, IssueForm, read_issue_form
from rail.console.resource import Console, ConsoleSources, Issuing
from rail.dkim.generations import Generation
from rail.dkim.rotation import Rotated
from rail.pki.operations import IssuedPEM
from rail.pki.registry import CertificateRecord
from rail.web.site import RailSite
from tests.web.test_admin import _AdminSite

_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
_KEY = b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI<secret>\n-----END PRIVATE KEY-----\n"
_CERT = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _record(name: str) -> CertificateRecord:
    now = datetime(2026, 12, 5, tzinfo=UTC)
    return CertificateRecord(
        serial=0xBEEF,
        name=name,
        senders=(f"{name}@rail.test",),
        webhook=None,
        key_type="ecdsa-p256",
        not_before=now,
        not_after=now + timedelta(days=30),
        issued_at=now,
        revoked_at=None,
        fingerprint_sha256="00",
        pem=_CERT,
        role="client",
    )


class IssueResourceTests(_AdminSite):
    def setUp(self) -> None:
        super().setUp()
        self.issued: list[IssueForm] = []
        self.outcome: Issued | list[str] = Issued(IssuedPEM(_record("shop"), _CERT, _KEY))
        self.rotations: list[str] = []
        self.rotation: Deferred[Rotated | str] | None = None
        self._site: RailSite | None = None

    def check(self, form: IssueForm) -> list[str]:
        return [] if form.name != "bad name" else ["--name 'bad name': may contain only ..."]

    def issue(self, form: IssueForm) -> Deferred[Issued | list[str]]:
        self.issued.append(form)
        return succeed(self.outcome)

    def rotate(self, domain: str) -> Deferred[Rotated | str]:
        self.rotations.append(domain)
        assert self.rotation is not None
        return self.rotation

    def site(self) -> RailSite:
        if self._site is not None:
            return self._site
        sources = ConsoleSources(
            store=self.store,
            clock=self.clock,
            secret=b"k" * 32,
            dkim=lambda: succeed(
                [DKIMSelectors("rail.test", "r2e", "r2r", 0.0, ("r2e._domainkey.rail.test. TXT",))]
            ),
            issuing=Issuing(self.check, self.issue, ("ed25519", "ecdsa-p256"), "ed25519", 365),
            rotate_dkim=self.rotate,
        )
        root = Resource()
        root.putChild(b"console", Console(sources))
        self._site = RailSite(root, max_body=1024 * 1024, idle_timeout=60.0, clock=self.clock)
        return self._site

    def token(self, path: str, action: str) -> str:
        page = self.request("GET", path, certificate=self.admin)
        found = re.search(
            rb'action="' + action.encode() + rb'"[^>]*><input type="hidden" name="csrf"'
            rb' value="([0-9a-f]{64})"',
            page.body,
        )
        assert found is not None, page.body
        return found.group(1).decode()

    def post(self, path: str, fields: dict[str, str], certificate: Any = None) -> Any:
        body = urlencode(fields).encode()
        return self.request("POST", path, body, _FORM, certificate=certificate or self.admin)

    def test_review_confirm_issue(self) -> None:
        """The first POST issues nothing and shows the confirmation (with the default key
        type filled in); the confirmed one issues once and shows the key with its
        downloads; bad fields come back (400) with their messages and the values kept."""
        token = self.token("/console/clients", "/console/certificates/issue")
        fields = {"csrf": token, "name": "shop", "emails": "shop@rail.test,\nnews@rail.test"}
        review = self.post("/console/certificates/issue", fields)
        self.assertEqual(review.status, 200)
        self.assertIn(b"<h1>Issue this certificate?</h1>", review.body)
        self.assertIn(b"<dd>ed25519</dd>", review.body)
        self.assertIn(b"<dd>365 days</dd>", review.body)
        self.assertEqual(self.issued, [])
        issued = self.post("/console/certificates/issue", {**fields, "confirm": "1"})
        self.assertEqual(issued.status, 200)
        self.assertEqual(
            self.issued,
            [IssueForm("shop", ("shop@rail.test", "news@rail.test"), None, False, "ed25519")],
        )
        self.assertIn(b"&lt;secret&gt;", issued.body)
        self.assertIn(b'data-copy="Copy the private key of shop"', issued.body)
        self.assertIn(b'<script src="/console/static/console.js" defer="defer">', issued.body)
        self.assertIn(b">Download shop.key</button>", issued.body)
        self.assertEqual(issued.headers["cache-control"], "no-store")
        bad = self.post("/console/certificates/issue", {**fields, "name": "bad name"})
        self.assertEqual(bad.status, 400)
        self.assertIn(b"<li>--name 'bad name': may contain only ...</li>", bad.body)
        self.assertIn(b'value="bad name"', bad.body)
        self.outcome = ["--email 'shop@rail.test': already held by ..."]
        held = self.post("/console/certificates/issue", {**fields, "confirm": "1"})
        self.assertEqual(held.status, 400)
        self.assertIn(b"already held by", held.body)

    def test_download(self) -> None:
        """A download sends the posted PEM back as an attachment named for the client;
        anything that is not a PEM of that kind, or a name that is no file name, is
        refused."""
        token = self.token("/console/clients", "/console/certificates/issue")
        issued = self.post(
            "/console/certificates/issue",
            {"csrf": token, "name": "shop", "emails": "shop@rail.test", "confirm": "1"},
        )
        found = re.search(
            rb'action="/console/certificates/download"><input type="hidden" name="csrf"'
            rb' value="([0-9a-f]{64})"',
            issued.body,
        )
        assert found is not None
        download = found.group(1).decode()
        fields = {"csrf": download, "name": "shop", "kind": "key", "pem": _KEY.decode()}
        saved = self.post("/console/certificates/download", fields)
        self.assertEqual(saved.status, 200)
        self.assertEqual(saved.body, _KEY)
        self.assertEqual(saved.headers["content-disposition"], 'attachment; filename="shop.key"')
        for change in (
            {"kind": "crt"},
            {"kind": "p12"},
            {"name": "../etc/passwd"},
            {"name": 'a"b'},
            {"pem": "<html>"},
        ):
            refused = self.post("/console/certificates/download", {**fields, **change})
            self.assertEqual(refused.status, 400, change)
        forged = self.post("/console/certificates/download", {**fields, "csrf": token})
        self.assertEqual(forged.status, 403)

    def test_rotation(self) -> None:
        """Rotate links to a confirmation; confirming rotates once and redirects to the
        Domains page, which shows the domain's new selectors and records; a refusal is
        a 409 with its message; a path that is not a domain name is 404."""
        page = self.request("GET", "/console/domains", certificate=self.admin)
        self.assertIn(b'href="/console/dkim/rail.test/rotate"', page.body)
        token = self.token("/console/dkim/rail.test/rotate", "/console/dkim/rail.test/rotate")
        self.rotation = succeed(
            Rotated("rail.test", Generation(name="r2", activated_at=0.0), ("r2e ...",))
        )
        done = self.post("/console/dkim/rail.test/rotate", {"csrf": token})
        self.assertEqual(done.status, 303)
        self.assertEqual(done.headers["location"], "/console/domains?rotated=rail.test#main")
        self.assertEqual(self.rotations, ["rail.test"])
        shown = self.request("GET", "/console/domains?rotated=rail.test", certificate=self.admin)
        self.assertIn(b"Rotated rail.test: it signs with selectors r2e (Ed25519)", shown.body)
        self.assertIn(b"r2e._domainkey.rail.test. TXT", shown.body)
        other = self.request("GET", "/console/domains?rotated=evil.example", certificate=self.admin)
        self.assertNotIn(b"Rotated", other.body)
        self.rotation = succeed("example.net: not a local domain (local: rail.test)")
        refused = self.post("/console/dkim/rail.test/rotate", {"csrf": token})
        self.assertEqual(refused.status, 409)
        self.assertIn(b"example.net: not a local domain (local: rail.test)", refused.body)
        for path in ("/console/dkim/RAIL.test/rotate", "/console/dkim/a%20b/rotate"):
            self.assertEqual(self.request("GET", path, certificate=self.admin).status, 404)


class ReadFormTests(SynchronousTestCase):
    def test_fields(self) -> None:
        """Addresses split on commas, spaces and new lines; empty optional fields are
        None; the admin box is ticked by the value 1 only."""
        form = read_issue_form(
            {
                b"name": [b" ops "],
                b"emails": [b""],
                b"webhook": [b""],
                b"admin": [b"1"],
                b"events": [b"all"],
            }
        )
        self.assertEqual(form, IssueForm("ops", (), None, True, "", "", "all", None))
        form = read_issue_form({b"emails": [b"a@x, b@x\r\nc@x"], b"admin": [b"on"]})
        self.assertEqual((form.emails, form.admin), (("a@x", "b@x", "c@x"), False))
