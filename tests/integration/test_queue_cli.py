"""``rail queue`` against a running server over real TLS, and the admin API's refusals.

The server is the service tree ``twistd rail`` builds, on 127.0.0.1 with ephemeral
ports and ``delivery.hold`` so accepted mail stays queued; ``rail queue`` runs as a real
process that talks HTTPS to it with the admin certificate it issues for itself.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from rail.config import load_config
from rail.service import build_service
from tests.integration.fixtures import client_identity, rail_ca
from tests.integration.processes import rail
from tests.integration.tlsclient import https_request


def _smtp_mail_from(port: int, ca_file: Path, pair: tuple[Path, Path]) -> tuple[int, bytes]:
    """MAIL FROM over SMTPS with ``pair``: the reply (blocking)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.load_cert_chain(str(pair[0]), str(pair[1]))
    with smtplib.SMTP_SSL("127.0.0.1", port, context=context, timeout=10) as client:
        client.ehlo("ops.test")
        reply: tuple[int, bytes] = client.mail("ops@rail.test")
        return reply


class _RunningRail(TestCase):
    timeout = 120
    public_stats = "loopback"

    def setUp(self) -> None:
        self.base = Path(self.mktemp()).absolute()
        self.base.mkdir(parents=True)
        self.data = self.base / "data"
        self.config_path = self.base / "rail.yaml"
        self.config_path.write_text(
            yaml.safe_dump(
                {
                    "hostname": "rail.test",
                    "data_dir": str(self.data),
                    "local_domains": ["rail.test"],
                    "listen": {
                        "https": "tcp:0:interface=127.0.0.1",
                        "submission": "tcp:0:interface=127.0.0.1",
                        "inbound": None,
                        "http": None,
                        "dns": None,
                    },
                    "tls": {"self_signed": True},
                    "delivery": {"hold": True},
                    "shutdown": {"drain_delay": "0s"},
                    "web": {"public_stats": self.public_stats},
                }
            )
        )
        config = load_config(self.config_path)
        self.ca = rail_ca(self.data)
        self.ca_file = self.data / "ca" / "ca.crt"
        self.app = client_identity(self.base, self.ca, "app", emails=("app@rail.test",))
        self.service = build_service(config, reactor)
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.port = self.service.getServiceNamed("https").port.getHost().port
        self.smtps = self.service.getServiceNamed("submission").port.getHost().port

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return deferToThread(https_request, self.port, method, path, self.ca_file, **kwargs)

    def queue(self, *args: str) -> Any:
        """``rail queue ARGS`` against this server; fires with (stdout, stderr, code)."""
        url = f"https://127.0.0.1:{self.port}"
        return rail("queue", *args, "--config", str(self.config_path), "--url", url)

    @inlineCallbacks
    def send(self, to: str, **extra: Any) -> Any:
        body = json.dumps(
            {"from": "app@rail.test", "to": [to], "subject": "hello", "body_text": "hi", **extra}
        ).encode()
        response = yield self.request(
            "POST",
            "/api/v1/send",
            cert=self.app.pair,
            body=body,
            extra_headers={"Content-Type": "application/json"},
        )
        self.assertEqual(response.status, 202, response.body)
        return json.loads(response.body)["id"]


class QueueCommandTests(_RunningRail):
    @inlineCallbacks
    def test_every_subcommand(self) -> Any:
        """list, show, hold, release, retry (ID, --all, --domain), delete and bounce
        each work against the running server, in text and --json, with the documented
        exit codes for a refused action (1) and bad usage (2)."""
        first = yield self.send("bob@example.com")
        second = yield self.send("carl@example.org")

        out, err, code = yield self.queue("list")
        self.assertEqual(code, 0, err)
        header, *rows = out.decode().splitlines()
        self.assertEqual(
            header.split(), ["ID", "RECEIVED", "STATUS", "CLIENT", "FROM", "RECIPIENTS"]
        )
        self.assertEqual([row.split()[0] for row in rows], [second, first])
        out, err, code = yield self.queue("list", "--json", "--domain", "EXAMPLE.org")
        self.assertEqual(code, 0, err)
        self.assertEqual([m["id"] for m in json.loads(out)["messages"]], [second])
        # The CLI's own admin certificate is kept under data_dir, key private.
        key = self.data / "cli" / "rail-cli.key"
        self.assertEqual(key.stat().st_mode & 0o777, 0o600)

        out, err, code = yield self.queue("show", first)
        self.assertEqual(code, 0, err)
        text = out.decode()
        self.assertIn(f"id        {first}", text)
        self.assertIn("bob@example.com  queued  attempts=0", text)
        self.assertIn("subject: hello", text)

        out, err, code = yield self.queue("hold", first, "--reason", "looks odd")
        self.assertEqual(code, 0, err)
        out, err, code = yield self.queue("hold", first)
        self.assertEqual(code, 1)
        self.assertIn(b"409 ALREADY_HELD", err)
        out, err, code = yield self.queue("list", "--status", "held", "--json")
        self.assertEqual([m["id"] for m in json.loads(out)["messages"]], [first])
        out, err, code = yield self.queue("show", first, "--json")
        shown = json.loads(out)
        self.assertEqual((shown["status"], shown["held"]), ("held", True))
        self.assertEqual(shown["actions"][0]["by"], "rail-cli")
        self.assertEqual(shown["actions"][0]["reason"], "looks odd")
        out, err, code = yield self.queue("release", first)
        self.assertEqual(code, 0, err)

        for args in ([first], ["--all"], ["--domain", "example.com"]):
            out, err, code = yield self.queue("retry", *args)
            self.assertEqual(code, 0, err)
            self.assertIn(b"due now", out)
        out, err, code = yield self.queue("retry")
        self.assertEqual(code, 2)

        out, err, code = yield self.queue("delete", second)
        self.assertEqual(code, 2)  # --reason is required
        out, err, code = yield self.queue("delete", second, "--reason", "sent by mistake")
        self.assertEqual(code, 0, err)
        out, err, code = yield self.queue("show", second, "--json")
        recipient = json.loads(out)["recipients"][0]
        self.assertEqual(
            (recipient["status"], recipient["last_reply"]),
            ("deleted", "deleted by rail-cli: sent by mistake"),
        )

        out, err, code = yield self.queue("bounce", first, "--json")
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out), {"id": first, "action": "bounce"})
        out, err, code = yield self.queue("list", "--json")
        messages = json.loads(out)["messages"]
        statuses = {m["id"]: m["status"] for m in messages}
        self.assertEqual((statuses[first], statuses[second]), ("bounced", "deleted"))
        [dsn] = [m for m in messages if m["id"] not in (first, second)]
        self.assertEqual((dsn["from"], dsn["recipients"]), ("", ["app@rail.test"]))

        out, err, code = yield self.queue("show", "01ARZ3NDEKTSV4RRFFQ69G5FAV")
        self.assertEqual(code, 1)
        self.assertIn(b"404 NOT_FOUND", err)

    @inlineCallbacks
    def test_list_by_tag_request_id_metadata_sender(self) -> Any:
        """``list`` finds messages by their tag, request_id, metadata (every pair must
        match) and sender, as the admin API's filters do; a malformed --metadata is a
        usage error (exit 2)."""
        first = yield self.send(
            "bob@example.com", tag="welcome", request_id="r-1", metadata={"user": "42"}
        )
        second = yield self.send(
            "carl@example.org", tag="receipt", metadata={"user": "42", "plan": "pro"}
        )

        def listed(*args: str) -> Any:
            done = self.queue("list", "--json", *args)
            return done.addCallback(lambda r: [m["id"] for m in json.loads(r[0])["messages"]])

        self.assertEqual((yield listed("--tag", "welcome")), [first])
        self.assertEqual((yield listed("--request-id", "r-1")), [first])
        self.assertEqual((yield listed("--metadata", "user=42")), [second, first])
        self.assertEqual(
            (yield listed("--metadata", "user=42", "--metadata", "plan=pro")), [second]
        )
        self.assertEqual((yield listed("--sender", "app@rail.test")), [second, first])
        self.assertEqual((yield listed("--sender", "nobody@rail.test")), [])
        out, err, code = yield self.queue("list", "--metadata", "user")
        self.assertEqual(code, 2)
        self.assertIn(b"expected KEY=VALUE", err)

    @inlineCallbacks
    def test_client_certificate_refused(self) -> Any:
        """The admin API refuses a request without a certificate (401) and one with a
        client certificate (403 ADMIN_REQUIRED), over the wire and through the CLI."""
        response = yield self.request("GET", "/api/v1/admin/messages")
        self.assertEqual(response.status, 401)
        self.assertEqual(json.loads(response.body)["error"]["code"], "CLIENT_CERTIFICATE_REQUIRED")
        response = yield self.request("GET", "/api/v1/admin/messages", cert=self.app.pair)
        self.assertEqual(response.status, 403)
        self.assertEqual(json.loads(response.body)["error"]["code"], "ADMIN_REQUIRED")
        cert, key = self.app.pair
        out, err, code = yield self.queue("list", "--cert", str(cert), "--key", str(key))
        self.assertEqual(code, 1)
        self.assertIn(b"403 ADMIN_REQUIRED", err)

    @inlineCallbacks
    def test_admin_cannot_send(self) -> Any:
        """An admin certificate is refused as a sender: 403 ADMIN_CANNOT_SEND on the
        API, 550 5.7.1 at MAIL FROM on SMTPS."""
        out, err, code = yield self.queue("list")
        self.assertEqual(code, 0, err)
        admin = (self.data / "cli" / "rail-cli.crt", self.data / "cli" / "rail-cli.key")
        body = json.dumps(
            {"from": "ops@rail.test", "to": ["x@example.com"], "subject": "s", "body_text": "b"}
        ).encode()
        response = yield self.request(
            "POST",
            "/api/v1/send",
            cert=admin,
            body=body,
            extra_headers={"Content-Type": "application/json"},
        )
        self.assertEqual(response.status, 403)
        self.assertEqual(json.loads(response.body)["error"]["code"], "ADMIN_CANNOT_SEND")
        code, text = yield deferToThread(_smtp_mail_from, self.smtps, self.ca_file, admin)
        self.assertEqual(code, 550)
        self.assertTrue(text.startswith(b"5.7.1"), text)

    @inlineCallbacks
    def test_stats_from_loopback(self) -> Any:
        """Under the default ``loopback`` policy, /stats and /metrics answer a request
        from 127.0.0.1 without any certificate."""
        for path in ("/stats", "/metrics"):
            response = yield self.request("GET", path)
            self.assertEqual(response.status, 200, path)


class AdminOnlyStatsTests(_RunningRail):
    public_stats = "admin"

    @inlineCallbacks
    def test_stats_need_admin(self) -> Any:
        """Under ``admin``, even loopback needs an admin certificate for /metrics: none
        is 401, a client's 403, an admin's 200 (how Prometheus scrapes over mTLS)."""
        out, err, code = yield self.queue("list")
        self.assertEqual(code, 0, err)
        admin = (self.data / "cli" / "rail-cli.crt", self.data / "cli" / "rail-cli.key")
        response = yield self.request("GET", "/metrics")
        self.assertEqual(response.status, 401)
        response = yield self.request("GET", "/metrics", cert=self.app.pair)
        self.assertEqual(response.status, 403)
        response = yield self.request("GET", "/metrics", cert=admin)
        self.assertEqual(response.status, 200)
        self.assertIn(b"rail_", response.body)
