"""The HTTPS listener over real sockets and real TLS handshakes.

Client side is Python's ``ssl`` module in a thread; server side is the service tree
exactly as ``twistd rail`` builds it, on 127.0.0.1 with an ephemeral port.
"""

from __future__ import annotations

import json
import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client, revoke
from rail.service import build_service
from rail.shared.registry import registry_source
from tests.integration.fixtures import (
    client_identity,
    make_config,
    other_ca,
    rail_ca,
    self_signed_identity,
    server_auth_identity,
    storage_overrides,
)
from tests.integration.tlsclient import Response, https_request

_HANDSHAKE_REFUSED = (ssl.SSLError, ConnectionResetError, BrokenPipeError)


class _RunningRail(TestCase):
    """Starts the real service tree on an ephemeral port for each test."""

    extra_config: dict[str, Any] = {}

    def setUp(self) -> None:
        self.base = Path(self.mktemp()).absolute()
        self.base.mkdir(parents=True)
        self.data = self.base / "data"
        self.config = make_config(self.data, **storage_overrides(self), **self.extra_config)
        self.ca = rail_ca(self.data)
        self.ca_file = self.data / "ca" / "ca.crt"
        self.refusals: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if "reason" in event and "refused client certificate" in event.get("log_format", ""):
                self.refusals.append(event["reason"])

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        self.service = build_service(self.config, reactor)
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.port = self.service.getServiceNamed("https").port.getHost().port

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return deferToThread(https_request, self.port, method, path, self.ca_file, **kwargs)

    @inlineCallbacks
    def assertRefused(self, pair: tuple[Path, Path], reason: str) -> Any:
        d = self.request("GET", "/api/who", cert=pair)
        yield self.assertFailure(d, *_HANDSHAKE_REFUSED)
        self.assertIn(reason, self.refusals)


class WhoTests(_RunningRail):
    extra_config: dict[str, Any] = {"limits": {"http_body_size": "1MB"}}

    @inlineCallbacks
    def test_get_who_with_certificate(self) -> Any:
        """GET /api/who describes the client certificate the caller authenticated with."""
        me = client_identity(self.base, self.ca, "myapp", emails=("noreply@ataca.io",))
        response: Response = yield self.request("GET", "/api/who", cert=me.pair)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["content-type"], "application/json; charset=utf-8")
        info = json.loads(response.body)
        self.assertEqual(info["client_id"], "myapp")
        self.assertEqual(info["senders"], ["noreply@ataca.io"])
        self.assertEqual(info["webhook"], "https://app.example/hook")
        self.assertIs(info["valid"], True)
        self.assertIs(info["revoked"], False)
        self.assertIs(info["issued_by_rail"], True)
        self.assertEqual(info["key_type"], "ed25519")
        self.assertEqual(info["serial"], format(me.certificate.serial_number, "x"))
        self.assertEqual(info["problems"], [])

    @inlineCallbacks
    def test_get_who_over_tls12(self) -> Any:
        """TLS 1.2 clients with an ECDSA certificate are accepted as well as TLS 1.3."""
        me = client_identity(self.base, self.ca, "legacy", key_type="ecdsa-p256")
        response = yield self.request(
            "GET", "/api/who", cert=me.pair, tls_version=ssl.TLSVersion.TLSv1_2
        )
        self.assertEqual(json.loads(response.body)["key_type"], "ecdsa-p256")

    @inlineCallbacks
    def test_alpn_offers(self) -> Any:
        """Clients offering ALPN (curl: h2, http/1.1; or protocols Rail lacks) still connect."""
        for offer in (["h2", "http/1.1"], ["smtp"]):
            response = yield self.request("GET", "/healthz", alpn=offer)
            self.assertEqual(response.status, 200, offer)

    @inlineCallbacks
    def test_tls11_refused(self) -> Any:
        """TLS below 1.2 is refused at the handshake."""
        d = self.request("GET", "/healthz", tls_version=ssl.TLSVersion.TLSv1_1)
        yield self.assertFailure(d, *_HANDSHAKE_REFUSED)

    @inlineCallbacks
    def test_get_who_without_certificate(self) -> Any:
        """GET /api/who without a client certificate is a JSON 401, not a TLS failure."""
        response = yield self.request("GET", "/api/who")
        self.assertEqual(response.status, 401)
        self.assertEqual(json.loads(response.body)["error"]["code"], "CLIENT_CERTIFICATE_REQUIRED")

    @inlineCallbacks
    def test_post_who_pem_and_der(self) -> Any:
        """POST /api/who inspects a PEM or DER body without any client certificate."""
        them = client_identity(self.base, self.ca, "them", key_type="rsa2048")
        for encoding in (Encoding.PEM, Encoding.DER):
            body = them.certificate.public_bytes(encoding)
            response = yield self.request("POST", "/api/who", body=body)
            self.assertEqual(response.status, 200)
            info = json.loads(response.body)
            self.assertEqual((info["client_id"], info["key_type"]), ("them", "rsa2048"))
            self.assertIs(info["valid"], True)

    @inlineCallbacks
    def test_post_who_foreign_certificate(self) -> Any:
        """A certificate from another CA is described, with valid false and the reason."""
        foreign = client_identity(self.base, other_ca(), "foreign")
        body = foreign.certificate.public_bytes(Encoding.PEM)
        response = yield self.request("POST", "/api/who", body=body)
        info = json.loads(response.body)
        self.assertIs(info["valid"], False)
        self.assertIs(info["issued_by_rail"], False)
        self.assertEqual(info["problems"], ["not issued by this Rail CA"])

    @inlineCallbacks
    def test_post_who_garbage(self) -> Any:
        """Garbage or an empty body is a JSON 400 INVALID_CERTIFICATE."""
        for body in (
            b"hello",
            b"",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ):
            response = yield self.request("POST", "/api/who", body=body)
            self.assertEqual(response.status, 400)
            self.assertEqual(json.loads(response.body)["error"]["code"], "INVALID_CERTIFICATE")

    @inlineCallbacks
    def test_post_who_too_large(self) -> Any:
        """A body over limits.http_body_size is refused with 413 before it is read."""
        limit = self.config.limits.http_body_size
        response = yield self.request("POST", "/api/who", body=b"x" * (limit + 1))
        self.assertEqual(response.status, 413)
        self.assertEqual(json.loads(response.body)["error"]["code"], "PAYLOAD_TOO_LARGE")

    @inlineCallbacks
    def test_method_not_allowed(self) -> Any:
        """Unsupported methods get a JSON 405 with an Allow header."""
        response = yield self.request("DELETE", "/api/who")
        self.assertEqual(response.status, 405)
        self.assertEqual(response.headers["allow"], "GET, HEAD, POST")
        self.assertEqual(json.loads(response.body)["error"]["code"], "METHOD_NOT_ALLOWED")

    @inlineCallbacks
    def test_unknown_path(self) -> Any:
        """Unknown paths are JSON 404s, never Twisted's HTML pages."""
        for path in ("/nope", "/api", "/api/who/extra", "/api/nope"):
            response = yield self.request("GET", path)
            self.assertEqual(response.status, 404, path)
            self.assertEqual(json.loads(response.body)["error"]["code"], "NOT_FOUND")

    @inlineCallbacks
    def test_health_and_ready(self) -> Any:
        """/healthz answers 200 ok and /readyz 200 while serving."""
        health = yield self.request("GET", "/healthz")
        self.assertEqual((health.status, health.body), (200, b"ok\n"))
        ready = yield self.request("GET", "/readyz")
        self.assertEqual(ready.status, 200)

    def test_certificate_request_names_rail_ca(self) -> Any:
        """The server's CertificateRequest lists Rail's CA as the acceptable issuer."""

        def handshake() -> list[str]:
            context = SSL.Context(SSL.TLS_CLIENT_METHOD)
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
                raw.setblocking(True)  # pyOpenSSL raises WantRead on sockets with timeouts
                connection = SSL.Connection(context, raw)
                connection.set_connect_state()
                connection.do_handshake()
                names = [n.CN for n in connection.get_client_ca_list()]
                connection.shutdown()
                return names

        d = deferToThread(handshake)
        d.addCallback(self.assertEqual, ["Rail CA rail.test"])
        return d


class HandshakeRefusalTests(_RunningRail):
    """Every kind of unacceptable client certificate is refused during the handshake."""

    def test_other_ca(self) -> Any:
        """A certificate issued by another CA is refused."""
        return self.assertRefused(
            client_identity(self.base, other_ca(), "other").pair, "not issued by this Rail CA"
        )

    def test_self_signed(self) -> Any:
        """A self-signed client certificate is refused."""
        return self.assertRefused(self_signed_identity(self.base).pair, "self-signed certificate")

    def test_expired(self) -> Any:
        """A certificate past its notAfter is refused."""
        past = datetime.now(UTC) - timedelta(days=10)
        me = client_identity(self.base, self.ca, "old", now=past, validity=timedelta(days=1))
        return self.assertRefused(me.pair, "expired")

    def test_not_yet_valid(self) -> Any:
        """A certificate before its notBefore is refused."""
        future = datetime.now(UTC) + timedelta(days=2)
        me = client_identity(self.base, self.ca, "future", now=future)
        return self.assertRefused(me.pair, "not yet valid")

    def test_server_auth_only(self) -> Any:
        """A certificate of Rail's CA without clientAuth EKU is refused."""
        return self.assertRefused(
            server_auth_identity(self.base, self.ca).pair,
            "not a client certificate (wrong purpose)",
        )

    @inlineCallbacks
    def test_revoked_without_restart(self) -> Any:
        """A revocation applies to the next handshake once the running server has
        looked at the CRL file."""
        request = ClientRequest(
            name="soon-revoked",
            emails=("app@rail.test",),
            webhook=None,
            key_type="ed25519",
            validity=timedelta(days=30),
        )
        issued = issue_client(
            self.config, request, self.base, datetime.now(UTC), source=registry_source(self.config)
        )
        pair = (issued.certificate_path, issued.key_path)
        response = yield self.request("GET", "/api/who", cert=pair)
        self.assertEqual(response.status, 200)
        revoke(self.config, "soon-revoked", datetime.now(UTC), source=registry_source(self.config))
        # What the running server does within a second on its own (RevocationWatch).
        yield self.service.getServiceNamed("revocations").refresh()
        d = self.request("GET", "/api/who", cert=pair)
        failure = yield self.assertFailure(d, ssl.SSLError)
        # OpenSSL checks the CRL itself, so the client is told why.
        self.assertIn("CERTIFICATE_REVOKED", str(failure))
        self.assertIn("revoked", self.refusals)
        # Anonymous use of the same listener is unaffected.
        health = yield self.request("GET", "/healthz")
        self.assertEqual(health.status, 200)
