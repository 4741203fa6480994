"""Admin certificates: issued with ``--admin``, recorded with their role, refused as senders."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta

from cryptography import x509
from cryptography.x509.oid import NameOID

from rail.mail.compose import authorize
from rail.mail.request import parse_request
from rail.pki.inspect import certificate_role
from rail.pki.issue import ClientRequest, check_client_request
from rail.pki.registry import Registry, registry_path
from rail.policy.identity import ClientIdentity, identity_from_certificate
from rail.policy.sender import ADMIN_CANNOT_SEND, check_sender
from tests.test_cli import _CLITestCase


class AdminIssueTests(_CLITestCase):
    def issue_admin(self, name: str = "ops", *extra: str) -> tuple[int, str, str]:
        return self.rail(
            "certs", "issue", "--config", str(self.config), "--admin", "--name", name,
            "--out", str(self.dir), *extra,
        )  # fmt: skip

    def test_admin_certificate_has_role_and_no_senders(self) -> None:
        """``certs issue --admin`` needs no --email; the certificate's subject carries
        OU=admin, no email SAN, and the server reads its role as admin."""
        code, out, err = self.issue_admin()
        self.assertEqual(code, 0, err)
        self.assertIn("role     admin", out)
        certificate = x509.load_pem_x509_certificate((self.dir / "ops.crt").read_bytes())
        units = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
        self.assertEqual([u.value for u in units], ["admin"])
        self.assertEqual(certificate_role(certificate), "admin")
        identity = identity_from_certificate(certificate)
        self.assertEqual((identity.name, identity.senders, identity.role), ("ops", (), "admin"))
        code, out, err = self.rail(
            "certs", "inspect", "--config", str(self.config), str(self.dir / "ops.crt")
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["role"], "admin")

    def test_list_shows_role(self) -> None:
        """``certs list`` shows each certificate's role, in the table and in --json."""
        self.issue()
        self.issue_admin()
        roles = {row["name"]: row["role"] for row in self.listed()}
        self.assertEqual(roles, {"myapp": "client", "ops": "admin"})
        code, out, _ = self.rail("certs", "list", "--config", str(self.config))
        header, *rows = out.splitlines()
        self.assertEqual(header.split()[:2], ["NAME", "ROLE"])
        self.assertEqual(sorted(row.split()[1] for row in rows), ["admin", "client"])

    def test_admin_with_email_or_webhook_refused(self) -> None:
        """An admin certificate with --email or --webhook is a usage error (exit 2),
        one line per problem, and nothing is written."""
        code, _, err = self.issue_admin(
            "ops", "--email", "ops@rail.test", "--webhook", "https://x.example/h"
        )
        self.assertEqual(code, 2)
        self.assertEqual(len(err.splitlines()), 2, err)
        self.assertFalse((self.dir / "ops.crt").exists())


class RoleMigrationTests(_CLITestCase):
    def test_version_1_registry_gains_role_column(self) -> None:
        """A registry written before roles existed (version 1) opens as version 2 with
        every existing certificate a client."""
        self.issue()
        path = registry_path(self.dir / "data")
        connection = sqlite3.connect(path)
        connection.execute("ALTER TABLE certificates DROP COLUMN role")
        connection.execute("PRAGMA user_version = 1")
        connection.commit()
        connection.close()
        with Registry.open(path) as registry:
            [record] = registry.list_all()
        self.assertEqual(record.role, "client")
        self.assertEqual(json.loads(self.rail(
            "certs", "list", "--config", str(self.config), "--json")[1])[0]["role"], "client"
        )  # fmt: skip


class AdminCannotSendTests(_CLITestCase):
    def test_check_sender_refuses_admin(self) -> None:
        """Sender authorization refuses any address for an admin identity with 550 5.7.1
        (SMTP) / 403 ADMIN_CANNOT_SEND (API), even one it would otherwise match."""
        admin = ClientIdentity(name="ops", senders=("ops@rail.test",), role="admin")
        reject = check_sender(admin, "ops@rail.test")
        self.assertEqual(reject, ADMIN_CANNOT_SEND)
        assert reject is not None
        self.assertEqual((reject.code, reject.enhanced), (550, "5.7.1"))
        self.assertEqual((reject.http_status, reject.error), (403, "ADMIN_CANNOT_SEND"))

    def test_api_authorize_refuses_admin(self) -> None:
        """The API's authorization answers 403 ADMIN_CANNOT_SEND for an admin."""
        admin = ClientIdentity(name="ops", senders=(), role="admin")
        request = parse_request(
            json.dumps(
                {"from": "ops@rail.test", "to": ["a@example.com"], "subject": "s",
                 "body_text": "b"}
            ).encode()
        )  # fmt: skip
        self.assertNotIsInstance(request, type(None))
        error = authorize(admin, request)  # type: ignore[arg-type]
        assert error is not None
        self.assertEqual((error.http_status, error.code), (403, "ADMIN_CANNOT_SEND"))

    def test_request_check(self) -> None:
        """An admin request without senders is valid; a client one is not."""
        client = ClientRequest("ops", (), None, "ed25519", timedelta(days=30))
        admin = ClientRequest("ops", (), None, "ed25519", timedelta(days=30), admin=True)
        self.assertEqual(check_client_request(admin, False), [])
        self.assertEqual(len(check_client_request(client, False)), 1)
