"""The console's acceptance chart, certificate issuing and DKIM rotation on a running
server over real HTTPS with client certificates (mTLS)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import smtplib
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher

from rail.cli import run
from rail.config import load_config
from rail.dkim.keys import KeyStore
from rail.pki.registry import Registry, registry_path
from tests.console.test_pages import chart_values
from tests.integration.test_console import csrf_of, issue_admin
from tests.integration.test_queue_cli import _RunningRail


def _submit(port: int, ca_file: Path, pair: tuple[Path, Path], to: str) -> None:
    """One message over SMTPS (port 465 style) with ``pair`` (blocking)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.load_cert_chain(str(pair[0]), str(pair[1]))
    with smtplib.SMTP_SSL("127.0.0.1", port, context=context, timeout=10) as client:
        client.sendmail("app@rail.test", [to], b"From: app@rail.test\r\nSubject: hi\r\n\r\nhi\r\n")


class _Console(_RunningRail):
    def setUp(self) -> None:
        super().setUp()
        self.admin = issue_admin(self.config_path, self.base / "admin")

    def store_clock(self) -> float:
        return float(reactor.seconds())

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


class AcceptedChartTests(_Console):
    @inlineCallbacks
    def test_sending_moves_the_chart(self) -> Any:
        """A message sent through the API, a batch of two and one over SMTPS each count
        in the overview's "Messages accepted" charts (hour and day) and in /stats'
        acceptance figures; the delivered chart does not move (delivery is held)."""
        before = yield self.get("/console/")
        self.assertEqual(before.status, 200)
        self.assertEqual(sum(chart_values(before.body, "Messages accepted, last hour")), 0)
        yield self.send("bob@example.com")
        batch = yield self.request(
            "POST",
            "/api/v1/send/batch",
            cert=self.app.pair,
            body=json.dumps(
                {
                    "messages": [
                        {"from": "app@rail.test", "to": [to], "subject": "s", "body_text": "b"}
                        for to in ("c@example.com", "d@example.com")
                    ]
                }
            ).encode(),
            extra_headers={"Content-Type": "application/json"},
        )
        self.assertEqual(batch.status, 200, batch.body)
        yield deferToThread(_submit, self.smtps, self.ca_file, self.app.pair, "e@example.com")
        after = yield self.get("/console/")
        self.assertEqual(sum(chart_values(after.body, "Messages accepted, last hour")), 4)
        self.assertEqual(sum(chart_values(after.body, "Messages accepted, last 24 hours")), 4)
        self.assertEqual(sum(chart_values(after.body, "Recipients delivered, last hour")), 0)
        stats = yield self.request("GET", "/stats")
        document = json.loads(stats.body)
        self.assertEqual(document["accepted_since_start"], 4)
        self.assertEqual(document["accepted_per_minute"]["1m"], 4.0)


def _cli(*args: str) -> tuple[int, str]:
    """``rail ARGS`` in this process (run from a thread): exit code and stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = run(list(args))
    return code, err.getvalue()


def _text(line: str) -> bytes:
    """``line`` as the template engine writes it in a text node."""
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").encode()


def _pems(body: bytes) -> tuple[bytes, bytes]:
    """The certificate and the private key shown on the issued page."""
    found = [
        re.search(rb"-----BEGIN %s-----.+?-----END %s-----" % (kind, kind), body, re.S)
        for kind in (b"CERTIFICATE", b"PRIVATE KEY")
    ]
    assert found[0] is not None and found[1] is not None, body
    return found[0].group(0), found[1].group(0)


class IssueTests(_Console):
    def setUp(self) -> None:
        super().setUp()
        self.logged: list[str] = []

        def observe(event: Any) -> None:
            self.logged.append(repr(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    @inlineCallbacks
    def review(self, fields: dict[str, str]) -> Any:
        """The issue form of the Clients page, filled with ``fields`` and posted."""
        page = yield self.get("/console/clients")
        self.assertEqual(page.status, 200)
        self.assertIn(b'<form method="post" action="/console/certificates/issue"', page.body)
        token = re.search(
            rb'action="/console/certificates/issue" class="issue">'
            rb'<input type="hidden" name="csrf" value="([0-9a-f]{64})"',
            page.body,
        )
        assert token is not None
        self.token = token.group(1).decode()
        response = yield self.post("/console/certificates/issue", {"csrf": self.token, **fields})
        return response

    @inlineCallbacks
    def test_issue_then_use(self) -> Any:
        """The form is checked and confirmed, then issued in the registry; the answer
        shows the certificate and key once (no-store), which work for the API at once;
        each downloads as an attachment; the issue is logged, the key never is."""
        fields = {
            "name": "shop",
            "emails": "shop@rail.test, news@rail.test",
            "key_type": "ecdsa-p256",
            "days": "30",
            "events": "message.delivered",
            "webhook": "https://hooks.example/in",
        }
        confirm = yield self.review(fields)
        self.assertEqual(confirm.status, 200, confirm.body)
        self.assertIn(b"<h1>Issue this certificate?</h1>", confirm.body)
        self.assertIn(b"<dd>shop@rail.test, news@rail.test</dd>", confirm.body)
        self.assertIn(b"<dd>30 days</dd>", confirm.body)
        self.assertNotIn(b"PRIVATE KEY", confirm.body)
        listed, _ = yield deferToThread(_cli, "certs", "list", "--config", str(self.config_path))
        issued = yield self.post(
            "/console/certificates/issue", {"csrf": self.token, **fields, "confirm": "1"}
        )
        self.assertEqual(issued.status, 200, issued.body)
        self.assertEqual(issued.headers["cache-control"], "no-store")
        self.assertIn(b"<h1>Certificate issued: shop</h1>", issued.body)
        self.assertIn(
            b"<dd>message.delivered -&gt; the certificate's webhook URL</dd>", issued.body
        )
        certificate_pem, key_pem = _pems(issued.body)
        certificate = x509.load_pem_x509_certificate(certificate_pem)
        key = serialization.load_pem_private_key(key_pem, None)
        self.assertEqual(certificate.public_key(), key.public_key())
        config = load_config(self.config_path)
        with Registry.open(registry_path(config.data_dir)) as registry:
            records = registry.find("shop")
        self.assertEqual(
            [(r.name, r.senders, r.key_type) for r in records],
            [("shop", ("shop@rail.test", "news@rail.test"), "ecdsa-p256")],
        )
        pair = (self.base / "shop.crt", self.base / "shop.key")
        pair[0].write_bytes(certificate_pem + b"\n")
        pair[1].write_bytes(key_pem + b"\n")
        sent = yield self.request(
            "POST",
            "/api/v1/send",
            cert=pair,
            body=json.dumps(
                {
                    "from": "shop@rail.test",
                    "to": ["x@example.com"],
                    "subject": "s",
                    "body_text": "b",
                }
            ).encode(),
            extra_headers={"Content-Type": "application/json"},
        )
        self.assertEqual(sent.status, 202, sent.body)
        token = re.search(
            rb'action="/console/certificates/download">'
            rb'<input type="hidden" name="csrf" value="([0-9a-f]{64})"',
            issued.body,
        )
        assert token is not None
        download = yield self.post(
            "/console/certificates/download",
            {
                "csrf": token.group(1).decode(),
                "name": "shop",
                "kind": "key",
                "pem": key_pem.decode(),
            },
        )
        self.assertEqual(download.status, 200)
        self.assertEqual(download.headers["content-disposition"], 'attachment; filename="shop.key"')
        self.assertEqual(download.headers["content-type"], "application/x-pem-file")
        self.assertEqual(download.body, key_pem)
        forged = yield self.post(
            "/console/certificates/download",
            {
                "csrf": token.group(1).decode(),
                "name": "shop",
                "kind": "key",
                "pem": "<script>alert(1)</script>",
            },
        )
        self.assertEqual(forged.status, 400)
        self.assertTrue(
            any("issued certificate" in line and "shop" in line for line in self.logged)
        )
        self.assertFalse(
            [
                line
                for line in self.logged
                if "PRIVATE KEY" in line or key_pem[40:80].decode() in line
            ]
        )

    @inlineCallbacks
    def test_refusals_as_the_cli_words_them(self) -> Any:
        """A bad name, a bad address, a duplicate address, a bad webhook URL and an
        address another client holds are refused (400) with the messages of
        ``rail certs issue``; nothing is issued."""
        cases = [
            (
                {"name": "bad name", "emails": "a@rail.test"},
                ["--name", "bad name", "--email", "a@rail.test"],
            ),
            (
                {"name": "shop", "emails": "not-an-address"},
                ["--name", "shop", "--email", "not-an-address"],
            ),
            (
                {"name": "shop", "emails": "a@rail.test a@rail.test"},
                ["--name", "shop", "--email", "a@rail.test", "--email", "a@rail.test"],
            ),
            (
                {"name": "shop", "emails": "a@rail.test", "webhook": "ftp://hooks.example/x"},
                ["--name", "shop", "--email", "a@rail.test", "--webhook", "ftp://hooks.example/x"],
            ),
            (
                {"name": "ops2", "admin": "1", "emails": "a@rail.test"},
                ["--name", "ops2", "--admin", "--email", "a@rail.test"],
            ),
        ]
        for fields, argv in cases:
            page = yield self.review(fields)
            self.assertEqual(page.status, 400, (fields, page.body))
            self.assertIn(b"Nothing was issued:", page.body)
            code, err = yield deferToThread(
                _cli,
                "certs",
                "issue",
                "--config",
                str(self.config_path),
                "--out",
                str(self.base),
                *argv,
            )
            self.assertNotEqual(code, 0)
            for line in err.splitlines():
                self.assertTrue(line.startswith("rail: "), err)
                self.assertIn(_text(line[len("rail: ") :]), page.body, fields)
        # Held by another client's valid certificate: found when issuing (the
        # registry's check, in the same transaction as the insert).
        code, err = yield deferToThread(
            _cli, "certs", "issue", "--config", str(self.config_path), "--out", str(self.base),
            "--name", "first", "--email", "app@rail.test",
        )  # fmt: skip
        self.assertEqual(code, 0, err)
        fields = {"name": "shop", "emails": "app@rail.test"}
        confirm = yield self.review(fields)
        self.assertEqual(confirm.status, 200)
        held = yield self.post(
            "/console/certificates/issue", {"csrf": self.token, **fields, "confirm": "1"}
        )
        self.assertEqual(held.status, 400)
        self.assertIn(
            b"--email 'app@rail.test': already held by the valid certificate of",
            held.body,
        )
        self.assertNotIn(b"PRIVATE KEY", held.body)
        config = load_config(self.config_path)
        with Registry.open(registry_path(config.data_dir)) as registry:
            self.assertEqual(registry.find("shop"), [])

    @inlineCallbacks
    def test_only_admins_with_the_token(self) -> Any:
        """An application's certificate gets the 403 page; an admin without the form's
        token gets 403; neither issues anything."""
        fields = {"name": "shop", "emails": "shop@rail.test", "confirm": "1"}
        refused = yield self.post(
            "/console/certificates/issue", {"csrf": "0" * 64, **fields}, cert=self.app.pair
        )
        self.assertEqual(refused.status, 403)
        self.assertIn(b"An admin certificate is needed", refused.body)
        forged = yield self.post("/console/certificates/issue", {"csrf": "0" * 64, **fields})
        self.assertEqual(forged.status, 403)
        config = load_config(self.config_path)
        with Registry.open(registry_path(config.data_dir)) as registry:
            self.assertEqual(registry.find("shop"), [])


class RotateTests(_Console):
    @inlineCallbacks
    def test_rotate_from_the_domains_page(self) -> Any:
        """The Domains page links each domain's rotation to a confirmation; confirming
        adds a generation on disk, and the page then names the new selectors (signing
        now) and shows their records to publish; an application's certificate is
        refused."""
        config = load_config(self.config_path)
        before = KeyStore.open(config.data_dir / "dkim")
        old = before.signing_keys("rail.test", self.store_clock()).ed25519_selector
        page = yield self.get("/console/domains")
        self.assertIn(
            b'<a href="/console/dkim/rail.test/rotate"'
            b' aria-label="Rotate the DKIM keys of rail.test">Rotate</a>',
            page.body,
        )
        confirm = yield self.get("/console/dkim/rail.test/rotate")
        self.assertIn(b"<h1>Rotate the DKIM keys?</h1>", confirm.body)
        token = csrf_of(confirm.body)
        refused = yield self.post(
            "/console/dkim/rail.test/rotate", {"csrf": token}, cert=self.app.pair
        )
        self.assertEqual(refused.status, 403)
        done = yield self.post("/console/dkim/rail.test/rotate", {"csrf": token})
        self.assertEqual(done.status, 303, done.body)
        self.assertEqual(done.headers["location"], "/console/domains?rotated=rail.test#main")
        after = KeyStore.open(config.data_dir / "dkim")
        generation = after.signing_keys("rail.test", self.store_clock() + 1)
        self.assertNotEqual(generation.ed25519_selector, old)
        shown = yield self.get("/console/domains?rotated=rail.test")
        self.assertIn(
            (
                f"Rotated rail.test: it signs with selectors {generation.ed25519_selector}"
                f" (Ed25519) and {generation.rsa_selector} (RSA) from now on."
            ).encode(),
            shown.body,
        )
        self.assertIn(f"{generation.ed25519_selector}._domainkey.rail.test. ".encode(), shown.body)
        self.assertIn(b'data-copy="Copy the new DKIM records of rail.test"', shown.body)

    @inlineCallbacks
    def test_not_a_local_domain(self) -> Any:
        """A domain that is not local is refused with ``rail dkim rotate``'s message."""
        confirm = yield self.get("/console/dkim/example.net/rotate")
        refused = yield self.post(
            "/console/dkim/example.net/rotate", {"csrf": csrf_of(confirm.body)}
        )
        self.assertEqual(refused.status, 409)
        code, err = yield deferToThread(
            _cli, "dkim", "rotate", "--config", str(self.config_path), "example.net"
        )
        self.assertEqual(code, 1)
        self.assertIn(_text(err.strip()[len("rail: ") :]), refused.body)
