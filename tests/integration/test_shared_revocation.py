"""Two nodes on one PostgreSQL database: a revocation through one refuses the next
connection to the other (issue 17).

Two service trees are built as ``twistd rail`` builds them, each with its own data
directory and listeners on 127.0.0.1, both with ``storage.backend: postgresql`` and the
same DSN. Node A's admin API revokes; node B, told by PostgreSQL's notification, refuses
the certificate on its next TLS handshake on port 465 and on HTTPS.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from rail.service import build_service
from rail.shared.registry import registry_source
from tests.integration.fixtures import make_config
from tests.integration.test_https import _HANDSHAKE_REFUSED
from tests.integration.tlsclient import PersistentConnection, https_request
from tests.support.postgres import postgres_dsn

_log = Logger()


class TwoNodesTests(TestCase):
    def setUp(self) -> None:
        self.base = Path(self.mktemp()).absolute()
        self.base.mkdir(parents=True)
        dsn = postgres_dsn(self)
        storage = {"backend": "postgresql", "dsn": dsn}
        self.nodes = {}
        for name in ("a", "b"):
            config = make_config(self.base / name, storage=storage)
            service = build_service(config, reactor)
            service.privilegedStartService()
            service.startService()
            self.addCleanup(service.stopService)
            self.nodes[name] = (config, service)
        self.config = self.nodes["a"][0]
        self.ca_file = self.base / "a" / "ca" / "ca.crt"

    def issue(self, name: str, admin: bool = False) -> tuple[Path, Path, int]:
        request = ClientRequest(
            name=name,
            emails=() if admin else (f"{name}@rail.test",),
            webhook=None,
            key_type="ed25519",
            validity=timedelta(days=30),
            admin=admin,
        )
        issued = issue_client(
            self.config, request, self.base, datetime.now(UTC), source=registry_source(self.config)
        )
        return issued.certificate_path, issued.key_path, issued.record.serial

    def port(self, node: str, listener: str) -> int:
        return int(self.nodes[node][1].getServiceNamed(listener).port.getHost().port)

    @inlineCallbacks
    def test_revoked_through_a_refused_by_b(self) -> Any:
        """Both nodes serve the same CA: a client certificate works on B's 465 and
        HTTPS; node A's admin API revokes it (200); node B is notified and its next
        handshakes with that certificate fail on 465 and HTTPS, while another client
        still gets through."""
        cert, key, serial = self.issue("doomed")
        other_cert, other_key, _ = self.issue("bystander")
        admin_cert, admin_key, _ = self.issue("ops", admin=True)
        self.assertEqual(
            (self.base / "b" / "ca" / "ca.crt").read_bytes(), self.ca_file.read_bytes()
        )
        # B learns of the new certificates as A does: both answer /api/who for it.
        response = yield deferToThread(
            https_request,
            self.port("b", "https"),
            "GET",
            "/api/who",
            self.ca_file,
            cert=(cert, key),
        )
        self.assertEqual(json.loads(response.body)["client_id"], "doomed")
        connection = yield deferToThread(
            PersistentConnection, self.port("b", "submission"), self.ca_file, (cert, key)
        )
        greeting = yield deferToThread(connection.smtp_reply)
        connection.close()
        self.assertTrue(greeting.startswith(b"220 "), greeting)

        b_service = self.nodes["b"][1]
        heard: list[str] = []
        b_service.getServiceNamed("shared-notifications").subscribe(
            "revocations", lambda: heard.append("revocations")
        )
        revocations_b = b_service.getServiceNamed("revocations").revocations
        response = yield deferToThread(
            https_request,
            self.port("a", "https"),
            "POST",
            f"/api/v1/admin/certificates/{serial:x}/revoke",
            self.ca_file,
            cert=(admin_cert, admin_key),
        )
        self.assertEqual(response.status, 200, response.body)
        answer = json.loads(response.body)
        self.assertEqual([r["serial"] for r in answer["revoked"]], [format(serial, "x")])
        started = reactor.seconds()
        # Wait (bounded) for B to apply it; the time it took is logged, not asserted.
        for _ in range(1000):
            if serial in revocations_b.serials:
                break
            yield task.deferLater(reactor, 0.005, lambda: None)
        self.assertIn(serial, revocations_b.serials)
        _log.info(
            "node B applied the revocation {ms:.1f} ms after node A answered",
            ms=(reactor.seconds() - started) * 1000,
        )
        self.assertIn("revocations", heard)

        def smtps() -> bytes:
            refused = PersistentConnection(self.port("b", "submission"), self.ca_file, (cert, key))
            try:
                return refused.smtp_reply()  # TLS 1.3: the alert arrives on first read
            finally:
                refused.close()

        yield self.assertFailure(deferToThread(smtps), *_HANDSHAKE_REFUSED)
        yield self.assertFailure(
            deferToThread(
                https_request,
                self.port("b", "https"),
                "GET",
                "/api/who",
                self.ca_file,
                cert=(cert, key),
            ),
            *_HANDSHAKE_REFUSED,
        )
        response = yield deferToThread(
            https_request,
            self.port("b", "https"),
            "GET",
            "/api/who",
            self.ca_file,
            cert=(other_cert, other_key),
        )
        self.assertEqual(json.loads(response.body)["client_id"], "bystander")
        # The revoking node answered only once it applied the revocation itself.
        self.assertIn(serial, self.nodes["a"][1].getServiceNamed("revocations").revocations.serials)
