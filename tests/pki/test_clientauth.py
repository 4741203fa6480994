"""Rail's handshake rules on top of OpenSSL's chain check (pure)."""

from __future__ import annotations

from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.trial.unittest import SynchronousTestCase

from rail.pki.clientauth import client_certificate_problem, verify_error_text
from tests.pki.helpers import build_certificate, issue_client, issue_server, make_ca


class ClientCertificateProblemTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = make_ca()

    def test_good_client(self) -> None:
        """A clientAuth leaf that is not revoked has no problem."""
        cert, _ = issue_client(self.ca)
        self.assertIsNone(client_certificate_problem(cert, frozenset()))

    def test_revoked(self) -> None:
        """A serial in the revoked set is refused as revoked."""
        cert, _ = issue_client(self.ca)
        self.assertEqual(
            client_certificate_problem(cert, frozenset({cert.serial_number})), "revoked"
        )

    def test_no_eku(self) -> None:
        """A leaf without any extended key usage is refused (OpenSSL would accept it)."""
        cert, _ = build_certificate(self.ca, usages=None)
        self.assertEqual(
            client_certificate_problem(cert, frozenset()),
            "not a client certificate (no clientAuth extended key usage)",
        )

    def test_server_auth_only(self) -> None:
        """A serverAuth-only leaf is refused."""
        cert, _ = issue_server(self.ca)
        self.assertEqual(
            client_certificate_problem(cert, frozenset()),
            "not a client certificate (no clientAuth extended key usage)",
        )

    def test_ca_certificate(self) -> None:
        """Rail's own CA certificate presented as a client certificate is refused."""
        self.assertEqual(
            client_certificate_problem(self.ca.certificate, frozenset()), "is a CA certificate"
        )
        cert, _ = build_certificate(self.ca, is_ca=True, usages=(ExtendedKeyUsageOID.CLIENT_AUTH,))
        self.assertEqual(client_certificate_problem(cert, frozenset()), "is a CA certificate")

    def test_verify_error_text(self) -> None:
        """OpenSSL verification codes read as words in the log, unknown ones by number."""
        self.assertEqual(verify_error_text(10), "expired")
        self.assertEqual(verify_error_text(23), "revoked")
        self.assertEqual(verify_error_text(999), "verification error 999")
