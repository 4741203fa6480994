"""``POST /api/v1/admin/certificates/{serial}/revoke`` over Twisted's HTTP parser, with a
real registry and the revocation run inline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import fail, maybeDeferred
from twisted.web.resource import Resource

from rail.pki.files import load_or_create_ca
from rail.pki.operations import revoke
from rail.pki.registry import CertificateRecord, Registry, RegistryError, registry_path
from rail.web.certrevoke import CertificatesResource
from rail.web.site import RailSite
from tests.integration.fixtures import make_config
from tests.pki.helpers import NOW as CERT_NOW
from tests.pki.helpers import issue_client
from tests.web.test_admin import _AdminSite


class CertificateRevokeTests(_AdminSite):
    def setUp(self) -> None:
        super().setUp()
        data_dir = Path(self.mktemp()).absolute()
        self.config = make_config(data_dir)
        ca, _ = load_or_create_ca(data_dir, "rail.test", CERT_NOW)
        certificate, _ = issue_client(ca, name="myapp")
        self.serial = certificate.serial_number
        with Registry.open(registry_path(data_dir)) as registry:
            registry.add(CertificateRecord.from_certificate(certificate, CERT_NOW))
        self.revoke: Any = lambda serial: maybeDeferred(revoke, self.config, serial, CERT_NOW)

    def site(self) -> RailSite:
        admin = Resource()
        admin.putChild(b"certificates", CertificatesResource(lambda s: self.revoke(s)))
        v1 = Resource()
        v1.putChild(b"admin", admin)
        api = Resource()
        api.putChild(b"v1", v1)
        root = Resource()
        root.putChild(b"api", api)
        return RailSite(root, max_body=1024 * 1024, idle_timeout=60.0, clock=self.clock)

    def path(self, serial: str | None = None) -> str:
        return f"/api/v1/admin/certificates/{serial or format(self.serial, 'x')}/revoke"

    def test_revoked(self) -> None:
        """An admin's POST revokes the certificate (200 with its name and serial); the
        same again is 409 NOT_REVOKED."""
        response = self.admin_request("POST", self.path())
        self.assertEqual(response.status, 200)
        [revoked] = response.json()["revoked"]
        self.assertEqual((revoked["name"], revoked["serial"]), ("myapp", f"{self.serial:x}"))
        again = self.admin_request("POST", self.path())
        self.assertEqual(again.status, 409)
        self.assertEqual(again.json()["error"]["code"], "NOT_REVOKED")

    def test_refusals(self) -> None:
        """A client certificate is 403 ADMIN_REQUIRED, a serial that is not hex 400
        INVALID_REQUEST, an unknown one 409 NOT_REVOKED; nothing is revoked."""
        response = self.request("POST", self.path())
        self.assertEqual(response.json()["error"]["code"], "ADMIN_REQUIRED")
        # Any method: a client learns nothing of the endpoint (it was a 405 for GET).
        response = self.request("GET", self.path())
        self.assertEqual(response.status, 403)
        self.assertEqual(response.json()["error"]["code"], "ADMIN_REQUIRED")
        response = self.admin_request("GET", self.path())
        self.assertEqual(response.status, 405)
        response = self.admin_request("POST", self.path("not-hex"))
        self.assertEqual(response.status, 400)
        self.assertEqual(response.json()["error"]["code"], "INVALID_REQUEST")
        response = self.admin_request("POST", self.path("abc123"))
        self.assertEqual(response.status, 409)
        self.assertEqual(response.json()["error"]["code"], "NOT_REVOKED")
        with Registry.open(registry_path(self.config.data_dir)) as registry:
            self.assertEqual(registry.revoked(), [])

    def test_registry_unavailable(self) -> None:
        """A registry that cannot be written is 503 REGISTRY_UNAVAILABLE."""
        self.revoke = lambda serial: fail(RegistryError("registry.sqlite3: disk I/O error"))
        response = self.admin_request("POST", self.path())
        self.assertEqual(response.status, 503)
        self.assertEqual(response.json()["error"]["code"], "REGISTRY_UNAVAILABLE")
        self.flushLoggedErrors()
