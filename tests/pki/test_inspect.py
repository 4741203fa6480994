"""Tests for rail.pki.inspect: what /api/who and 'rail certs inspect' report."""

from __future__ import annotations

import json
from datetime import timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from twisted.trial.unittest import SynchronousTestCase

from rail.pki.inspect import (
    PROBLEM_CA_CERTIFICATE,
    PROBLEM_EXPIRED,
    PROBLEM_MALFORMED_EXTENSIONS,
    PROBLEM_NOT_CLIENT,
    PROBLEM_NOT_RAIL,
    PROBLEM_NOT_YET_VALID,
    PROBLEM_REVOKED,
    CertificateInfo,
    info_to_json,
    inspect_certificate,
    parse_certificate,
)
from rail.pki.keys import KEY_TYPES, generate_private_key

from .helpers import (
    NOW,
    build_certificate,
    der,
    issue_client,
    issue_server,
    make_ca,
    make_expired_client,
    make_not_yet_valid_client,
    make_self_signed_client,
    pem,
)


def _inspect(
    cert: x509.Certificate, ca_cert: x509.Certificate, revoked: frozenset[int] = frozenset()
) -> CertificateInfo:
    return inspect_certificate(cert, ca_cert, revoked, NOW)


class ParseCertificateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.cert, _ = issue_client(make_ca())

    def test_pem(self) -> None:
        """A PEM certificate parses."""
        self.assertEqual(parse_certificate(pem(self.cert)), self.cert)

    def test_der(self) -> None:
        """A DER certificate parses."""
        self.assertEqual(parse_certificate(der(self.cert)), self.cert)

    def test_pem_with_text(self) -> None:
        """Text around the PEM block (openssl x509 -text output) is ignored."""
        data = b"Certificate:\n    Data: ...\nsubject=CN=myapp\n" + pem(self.cert) + b"\ntrailer\n"
        self.assertEqual(parse_certificate(data), self.cert)

    def test_crlf_pem(self) -> None:
        """PEM with CRLF line ends (files from Windows) parses."""
        self.assertEqual(parse_certificate(pem(self.cert).replace(b"\n", b"\r\n")), self.cert)

    def test_first_of_chain(self) -> None:
        """With several certificates, the first is the one inspected."""
        other, _ = issue_client(make_ca(), name="other")
        self.assertEqual(parse_certificate(pem(self.cert) + pem(other)), self.cert)

    def test_garbage(self) -> None:
        """Non-certificates are a ValueError with one fixed message."""
        key_pem = (
            b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"
        )
        broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        for data in [
            b"",
            b"garbage",
            b"\x30\x03\x02\x01\x01",
            key_pem,
            broken,
            der(self.cert)[:-1],
        ]:
            e = self.assertRaises(ValueError, parse_certificate, data)
            self.assertEqual(str(e), "not a PEM or DER X.509 certificate")

    def test_too_large(self) -> None:
        """More than 64 KiB is refused before any parsing."""
        e = self.assertRaises(ValueError, parse_certificate, pem(self.cert) + b" " * 65536)
        self.assertEqual(str(e), "certificate too large (more than 65536 bytes)")


class InspectValidTests(SynchronousTestCase):
    def test_each_key_type(self) -> None:
        """A Rail client certificate of each key type is valid and fully described."""
        ca = make_ca()
        for key_type in KEY_TYPES:
            cert, _ = issue_client(ca, key_type=key_type)
            info = _inspect(cert, ca.certificate)
            self.assertEqual(info.problems, ())
            self.assertTrue(info.valid)
            self.assertTrue(info.issued_by_rail)
            self.assertFalse(info.revoked)
            self.assertEqual(info.key_type, key_type)
            self.assertEqual(info.client_id, "myapp")
            self.assertEqual(info.senders, ("noreply@ataca.io", "alerts@smtp.ataca.io"))
            self.assertEqual(info.webhook, "https://myapp.example/hooks/email")

    def test_ca_key_types(self) -> None:
        """Certificates from RSA and ECDSA CAs verify as issued by Rail too."""
        for ca_type in ("ecdsa-p256", "rsa2048"):
            ca = make_ca(key_type=ca_type)
            cert, _ = issue_client(ca)
            self.assertTrue(_inspect(cert, ca.certificate).valid, ca_type)

    def test_fields(self) -> None:
        """Serial, fingerprint, names and dates are in the documented formats."""
        ca = make_ca()
        cert, _ = issue_client(ca)
        info = _inspect(cert, ca.certificate)
        self.assertEqual(info.serial, format(cert.serial_number, "x"))
        self.assertEqual(int(info.serial, 16), cert.serial_number)
        self.assertRegex(info.fingerprint_sha256, "^[0-9a-f]{64}$")
        self.assertEqual(info.subject, "CN=myapp,O=Rail")
        self.assertEqual(info.issuer, "CN=Rail CA test,O=Rail")
        self.assertEqual(info.not_before, NOW - timedelta(minutes=5))
        self.assertEqual(info.not_after, NOW + timedelta(days=90))

    def test_no_webhook(self) -> None:
        """A certificate without a URI SAN has webhook None."""
        ca = make_ca()
        cert, _ = issue_client(ca, webhook=None)
        self.assertIsNone(_inspect(cert, ca.certificate).webhook)

    def test_non_http_uri_ignored(self) -> None:
        """Only an http(s) URI SAN counts as the webhook."""
        ca = make_ca()
        cert, _ = build_certificate(ca, webhook="spiffe://example/app")
        self.assertIsNone(_inspect(cert, ca.certificate).webhook)


class InspectProblemsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = make_ca()

    def test_other_ca(self) -> None:
        """A certificate from another CA is not Rail's, whatever it contains."""
        cert, _ = issue_client(make_ca())
        info = _inspect(cert, self.ca.certificate)
        self.assertEqual(info.problems, (PROBLEM_NOT_RAIL,))
        self.assertFalse(info.valid)
        self.assertFalse(info.issued_by_rail)
        self.assertEqual(info.client_id, "myapp")

    def test_other_ca_same_name(self) -> None:
        """Copying the CA's name is not enough: the signature must verify with its key."""
        impostor = make_ca(common_name="Rail CA test")
        self.assertEqual(impostor.certificate.subject, self.ca.certificate.subject)
        cert, _ = issue_client(impostor)
        info = _inspect(cert, self.ca.certificate)
        self.assertEqual(info.problems, (PROBLEM_NOT_RAIL,))

    def test_self_signed(self) -> None:
        """A self-signed client-looking certificate is not Rail's."""
        cert, _ = make_self_signed_client()
        self.assertEqual(_inspect(cert, self.ca.certificate).problems, (PROBLEM_NOT_RAIL,))

    def test_expired(self) -> None:
        """A certificate after its notAfter is expired."""
        cert, _ = make_expired_client(self.ca)
        info = _inspect(cert, self.ca.certificate)
        self.assertEqual(info.problems, (PROBLEM_EXPIRED,))
        self.assertTrue(info.issued_by_rail)

    def test_validity_edges(self) -> None:
        """notBefore and notAfter themselves are inside the validity period."""
        cert, _ = build_certificate(self.ca, not_before=NOW, not_after=NOW)
        self.assertEqual(_inspect(cert, self.ca.certificate).problems, ())
        info = inspect_certificate(
            cert, self.ca.certificate, frozenset(), NOW + timedelta(seconds=1)
        )
        self.assertEqual(info.problems, (PROBLEM_EXPIRED,))
        info = inspect_certificate(
            cert, self.ca.certificate, frozenset(), NOW - timedelta(seconds=1)
        )
        self.assertEqual(info.problems, (PROBLEM_NOT_YET_VALID,))

    def test_not_yet_valid(self) -> None:
        """A certificate before its notBefore is not yet valid."""
        cert, _ = make_not_yet_valid_client(self.ca)
        self.assertEqual(_inspect(cert, self.ca.certificate).problems, (PROBLEM_NOT_YET_VALID,))

    def test_server_auth_only(self) -> None:
        """A serverAuth-only certificate from Rail's CA is not a client certificate."""
        cert, _ = issue_server(self.ca)
        info = _inspect(cert, self.ca.certificate)
        self.assertEqual(info.problems, (PROBLEM_NOT_CLIENT,))
        self.assertEqual(
            PROBLEM_NOT_CLIENT, "not a client certificate (no clientAuth extended key usage)"
        )

    def test_no_eku(self) -> None:
        """A certificate without any extended key usage is not a client certificate either."""
        cert, _ = build_certificate(self.ca, usages=None)
        self.assertEqual(_inspect(cert, self.ca.certificate).problems, (PROBLEM_NOT_CLIENT,))

    def test_client_and_server_auth(self) -> None:
        """clientAuth among other usages is enough."""
        usages = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
        cert, _ = build_certificate(self.ca, usages=usages)
        self.assertEqual(_inspect(cert, self.ca.certificate).problems, ())

    def test_revoked(self) -> None:
        """A Rail certificate whose serial is revoked is revoked and invalid."""
        cert, _ = issue_client(self.ca)
        info = _inspect(cert, self.ca.certificate, frozenset({1, cert.serial_number}))
        self.assertEqual(info.problems, (PROBLEM_REVOKED,))
        self.assertTrue(info.revoked)
        self.assertFalse(info.valid)

    def test_revoked_serial_of_other_ca(self) -> None:
        """A foreign certificate sharing a revoked serial is not reported as revoked."""
        cert, _ = build_certificate(make_ca(), serial=1234)
        info = _inspect(cert, self.ca.certificate, frozenset({1234}))
        self.assertFalse(info.revoked)
        self.assertEqual(info.problems, (PROBLEM_NOT_RAIL,))

    def test_ca_certificate(self) -> None:
        """The CA certificate itself is Rail's but is a CA, not a client."""
        info = _inspect(self.ca.certificate, self.ca.certificate)
        self.assertTrue(info.issued_by_rail)
        self.assertEqual(info.problems, (PROBLEM_CA_CERTIFICATE, PROBLEM_NOT_CLIENT))
        self.assertEqual(info.client_id, "Rail CA test")

    def test_ca_with_client_auth(self) -> None:
        """A CA certificate is refused even if it claims clientAuth."""
        cert, _ = build_certificate(self.ca, is_ca=True)
        self.assertEqual(_inspect(cert, self.ca.certificate).problems, (PROBLEM_CA_CERTIFICATE,))

    def test_many_problems(self) -> None:
        """All problems are listed in a fixed order."""
        cert, _ = build_certificate(
            make_ca(),
            is_ca=True,
            usages=(ExtendedKeyUsageOID.SERVER_AUTH,),
            not_before=NOW - timedelta(days=10),
            not_after=NOW - timedelta(days=1),
        )
        self.assertEqual(
            _inspect(cert, self.ca.certificate).problems,
            (PROBLEM_NOT_RAIL, PROBLEM_CA_CERTIFICATE, PROBLEM_NOT_CLIENT, PROBLEM_EXPIRED),
        )

    def test_messages(self) -> None:
        """The problem texts are the documented ones."""
        self.assertEqual(
            [
                PROBLEM_NOT_RAIL,
                PROBLEM_EXPIRED,
                PROBLEM_NOT_YET_VALID,
                PROBLEM_REVOKED,
                PROBLEM_CA_CERTIFICATE,
            ],
            [
                "not issued by this Rail CA",
                "expired",
                "not yet valid",
                "revoked",
                "is a CA certificate",
            ],
        )

    def test_malformed_extensions(self) -> None:
        """Unparseable extensions are reported as a problem, not raised."""
        key = generate_private_key("ed25519")
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broken")])
        garbage = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03ab")
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(NOW + timedelta(days=1))
            .add_extension(garbage, critical=False)
            .sign(key, None)
        )
        cert = parse_certificate(der(cert))
        info = _inspect(cert, self.ca.certificate)
        self.assertEqual(info.problems, (PROBLEM_NOT_RAIL, PROBLEM_MALFORMED_EXTENSIONS))
        self.assertEqual(info.senders, ())
        self.assertEqual(info.client_id, "broken")
        self.assertEqual(info.key_type, "ed25519")


class InfoToJSONTests(SynchronousTestCase):
    def test_shape(self) -> None:
        """Keys in the documented order, RFC 3339 'Z' times, lists, JSON-serialisable."""
        ca = make_ca()
        cert, _ = issue_client(ca)
        result = info_to_json(_inspect(cert, ca.certificate))
        self.assertEqual(
            list(result),
            [
                "client_id",
                "role",
                "senders",
                "webhook",
                "valid",
                "revoked",
                "issued_by_rail",
                "key_type",
                "serial",
                "not_before",
                "not_after",
                "fingerprint_sha256",
                "subject",
                "issuer",
                "problems",
            ],
        )
        self.assertEqual(result["not_before"], "2026-03-28T11:55:00Z")
        self.assertEqual(result["not_after"], "2026-06-26T12:00:00Z")
        self.assertEqual(result["senders"], ["noreply@ataca.io", "alerts@smtp.ataca.io"])
        self.assertEqual(result["problems"], [])
        self.assertEqual(result["client_id"], "myapp")
        self.assertEqual(result["role"], "client")
        self.assertIs(result["valid"], True)
        self.assertEqual(json.loads(json.dumps(result)), result)

    def test_problems_list(self) -> None:
        """Problems appear as a JSON list of strings."""
        cert, _ = make_self_signed_client()
        result = info_to_json(_inspect(cert, make_ca().certificate))
        self.assertEqual(result["problems"], ["not issued by this Rail CA"])
        self.assertIs(result["valid"], False)
