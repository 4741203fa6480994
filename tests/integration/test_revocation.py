"""Revocation reaches connections opened before it: SMTP sessions and kept-alive HTTPS.

The service tree runs as ``twistd rail`` builds it, on 127.0.0.1 with real TLS; clients
are Python's ``ssl`` module in a thread, speaking bytes. ``rail certs revoke`` is the
operation the CLI runs; the test then has the server look at the CRL file at once
(``RevocationWatch.refresh``, what it does by itself every second) and asserts against
the set it loaded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread

from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client, revoke
from rail.shared.registry import registry_source
from tests.integration.test_https import _HANDSHAKE_REFUSED, _RunningRail
from tests.integration.tlsclient import PersistentConnection, https_request


class OpenSessionRevocationTests(_RunningRail):
    def client(self, name: str) -> tuple[Any, Any]:
        request = ClientRequest(
            name=name,
            emails=(f"{name}@rail.test",),
            webhook=None,
            key_type="ed25519",
            validity=timedelta(days=30),
        )
        issued = issue_client(
            self.config, request, self.base, datetime.now(UTC), source=registry_source(self.config)
        )
        return issued.certificate_path, issued.key_path

    @inlineCallbacks
    def connect(self, listener: str, pair: tuple[Any, Any]) -> Any:
        port = self.service.getServiceNamed(listener).port.getHost().port
        connection = yield deferToThread(PersistentConnection, port, self.ca_file, pair)
        self.addCleanup(connection.close)
        return connection

    @inlineCallbacks
    def revoke_and_load(self, name: str) -> Any:
        revoke(self.config, name, datetime.now(UTC), source=registry_source(self.config))
        yield self.service.getServiceNamed("revocations").refresh()

    @inlineCallbacks
    def test_smtp_next_mail_from_refused(self) -> Any:
        """A port-465 session opened before its certificate is revoked gets
        ``530 5.7.0`` at its next MAIL FROM (byte for byte), can still QUIT, and the
        certificate's next connection fails its handshake; another client's open
        session is untouched."""
        doomed_pair = self.client("doomed")
        bystander_pair = self.client("bystander")
        doomed = yield self.connect("submission", doomed_pair)
        bystander = yield self.connect("submission", bystander_pair)
        for connection, name in ((doomed, b"doomed"), (bystander, b"bystander")):
            greeting = yield deferToThread(connection.smtp_reply)
            self.assertTrue(greeting.startswith(b"220 "), greeting)
            reply = yield deferToThread(connection.smtp, b"EHLO app.example")
            self.assertTrue(reply.startswith(b"250-"), reply)
            reply = yield deferToThread(connection.smtp, b"MAIL FROM:<" + name + b"@rail.test>")
            self.assertTrue(reply.startswith(b"250 2.1.0 "), reply)
            reply = yield deferToThread(connection.smtp, b"RSET")
            self.assertTrue(reply.startswith(b"250 "), reply)

        yield self.revoke_and_load("doomed")

        reply = yield deferToThread(doomed.smtp, b"MAIL FROM:<doomed@rail.test>")
        self.assertEqual(reply, b"530 5.7.0 Client certificate revoked\r\n")
        reply = yield deferToThread(bystander.smtp, b"MAIL FROM:<bystander@rail.test>")
        self.assertTrue(reply.startswith(b"250 2.1.0 "), reply)
        reply = yield deferToThread(doomed.smtp, b"QUIT")
        self.assertTrue(reply.startswith(b"221 "), reply)
        port = self.service.getServiceNamed("submission").port.getHost().port

        def reconnect() -> bytes:
            connection = PersistentConnection(port, self.ca_file, doomed_pair)
            try:
                return connection.smtp_reply()  # TLS 1.3: the alert arrives on first read
            finally:
                connection.close()

        yield self.assertFailure(deferToThread(reconnect), *_HANDSHAKE_REFUSED)

    @inlineCallbacks
    def test_https_keepalive_next_request_refused(self) -> Any:
        """On a kept-alive HTTPS connection, the first request after the revocation is
        loaded (here a send) answers ``401 CERTIFICATE_REVOKED`` with
        ``WWW-Authenticate: mutual-tls`` and the connection is closed; anonymous use of
        the listener on other connections is unaffected."""
        pair = self.client("doomed")
        connection = yield self.connect("https", pair)
        response = yield deferToThread(connection.http, "GET", "/api/who")
        self.assertEqual(response.status, 200)
        self.assertEqual(json.loads(response.body)["client_id"], "doomed")

        yield self.revoke_and_load("doomed")

        body = json.dumps(
            {"from": "doomed@rail.test", "to": ["x@example.com"], "subject": "s", "body_text": "t"}
        ).encode()
        response = yield deferToThread(
            connection.http, "POST", "/api/v1/send", body, **{"Content-Type": "application/json"}
        )
        self.assertEqual(response.status, 401)
        self.assertEqual(json.loads(response.body)["error"]["code"], "CERTIFICATE_REVOKED")
        self.assertEqual(response.headers["www-authenticate"], "mutual-tls")
        self.assertEqual(response.headers["connection"], "close")
        closed = yield deferToThread(connection.at_eof)
        self.assertTrue(closed)
        health = yield deferToThread(https_request, self.port, "GET", "/healthz", self.ca_file)
        self.assertEqual(health.status, 200)

    @inlineCallbacks
    def test_https_keepalive_each_identity_path(self) -> Any:
        """/api/who, /api/v1/messages/{id} and /api/v1/webhook-secret each answer a
        connection opened before the revocation 401 CERTIFICATE_REVOKED (the check runs
        before any resource)."""
        pair = self.client("doomed")
        paths = ("/api/who", "/api/v1/messages/01KMTBZ1G0X4Y7T2W9R3QHSNCE",
                 "/api/v1/webhook-secret")  # fmt: skip
        connections = []
        for _path in paths:
            connection = yield self.connect("https", pair)
            response = yield deferToThread(connection.http, "GET", "/healthz")
            self.assertEqual(response.status, 200)
            connections.append(connection)
        yield self.revoke_and_load("doomed")
        for connection, path in zip(connections, paths, strict=True):
            response = yield deferToThread(connection.http, "GET", path)
            self.assertEqual(response.status, 401, path)
            self.assertEqual(
                json.loads(response.body)["error"]["code"], "CERTIFICATE_REVOKED", path
            )
