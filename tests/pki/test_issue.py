"""Tests for rail.pki.issue: client and server certificates from Rail's CA."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.trial.unittest import SynchronousTestCase

from rail.pki.issue import (
    check_client_request,
    issue_client_certificate,
    issue_server_certificate,
    normalize_sender,
)
from rail.pki.keys import KEY_TYPES, generate_private_key, key_type_of, public_key_der

from .helpers import NOW, client_request, issue_client, issue_server, make_ca


class CheckClientRequestTests(SynchronousTestCase):
    def test_good(self) -> None:
        """A well-formed request has no problems."""
        self.assertEqual(check_client_request(client_request(), False), [])
        self.assertEqual(check_client_request(client_request(webhook=None), False), [])

    def test_every_problem_reported(self) -> None:
        """All problems are listed, each naming the CLI option and value responsible."""
        request = client_request(
            name="my app",
            emails=("a b@x.com", "ok@x.com", "ok@X.COM", "Ok@x.com"),
            webhook="http://myapp.com/hook",
            key_type="dsa",
            validity=timedelta(hours=1),
        )
        self.assertEqual(
            check_client_request(request, allow_http_loopback=True),
            [
                "--name 'my app': may contain only ASCII letters, digits, '.', '_' and '-'",
                "--email 'a b@x.com': must not contain whitespace or control characters",
                "--email 'ok@X.COM': duplicate of 'ok@x.com'",
                "--webhook 'http://myapp.com/hook': webhook must use https:// (plain http:// is"
                " only allowed for loopback hosts when webhooks.allow_http_loopback and"
                " webhooks.allow_private are both true)",
                "--key-type 'dsa': must be one of ed25519, ecdsa-p256, rsa2048",
                "--validity: must be between 1 day and 3650 days",
            ],
        )

    def test_no_email(self) -> None:
        """At least one sender is required."""
        self.assertEqual(
            check_client_request(client_request(emails=()), False),
            ["--email: at least one sender address is required"],
        )

    def test_too_many_emails(self) -> None:
        """More than 100 senders is refused, keeping certificates small."""
        emails = [f"u{i}@x.com" for i in range(101)]
        self.assertEqual(
            check_client_request(client_request(emails=emails), False),
            ["--email: at most 100 sender addresses are allowed"],
        )

    def test_validity_bounds(self) -> None:
        """Validity from 1 day to 3650 days inclusive is accepted; outside is not."""
        for days, ok in [(1, True), (3650, True), (0, False), (3651, False), (-5, False)]:
            problems = check_client_request(client_request(validity=timedelta(days=days)), False)
            self.assertEqual(problems == [], ok, days)

    def test_http_loopback(self) -> None:
        """An http loopback webhook is acceptable only when the setting allows it."""
        request = client_request(webhook="http://127.0.0.1:8080/hook")
        self.assertEqual(check_client_request(request, allow_http_loopback=True), [])
        self.assertEqual(len(check_client_request(request, allow_http_loopback=False)), 1)


class IssueClientTests(SynchronousTestCase):
    def test_contents(self) -> None:
        """CN, email SANs, URI SAN and clientAuth-only EKU are as requested."""
        ca = make_ca()
        cert, key = issue_client(ca, emails=("noreply@Ataca.IO", "Alerts@smtp.ataca.io"))
        self.assertEqual(cert.subject.rfc4514_string(), "CN=myapp,O=Rail")
        self.assertEqual(cert.issuer, ca.certificate.subject)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(
            san.get_values_for_type(x509.RFC822Name),
            ["noreply@ataca.io", "Alerts@smtp.ataca.io"],
        )
        self.assertEqual(
            san.get_values_for_type(x509.UniformResourceIdentifier),
            ["https://myapp.example/hooks/email"],
        )
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        self.assertFalse(eku.critical)
        self.assertEqual(list(eku.value), [ExtendedKeyUsageOID.CLIENT_AUTH])
        self.assertEqual(public_key_der(cert.public_key()), public_key_der(key.public_key()))
        cert.verify_directly_issued_by(ca.certificate)

    def test_constraints_and_identifiers(self) -> None:
        """Not a CA, digitalSignature usage, and key identifiers linking it to the CA."""
        ca = make_ca()
        cert, _ = issue_client(ca)
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(constraints.critical)
        self.assertFalse(constraints.value.ca)
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
        self.assertTrue(usage.critical)
        self.assertTrue(usage.value.digital_signature)
        self.assertFalse(usage.value.key_encipherment)
        self.assertFalse(usage.value.key_cert_sign)
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        self.assertEqual(aki.key_identifier, ca_ski.value.digest)
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        self.assertEqual(ski, x509.SubjectKeyIdentifier.from_public_key(cert.public_key()))

    def test_rsa_key_encipherment(self) -> None:
        """RSA client keys also get keyEncipherment (RSA key exchange)."""
        cert, _ = issue_client(make_ca(), key_type="rsa2048")
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertTrue(usage.key_encipherment)

    def test_each_key_type_with_each_ca_type(self) -> None:
        """Every client key type can be issued by every CA key type."""
        for ca_type in KEY_TYPES:
            ca = make_ca(key_type=ca_type)
            for key_type in KEY_TYPES:
                cert, _ = issue_client(ca, key_type=key_type)
                self.assertEqual(key_type_of(cert.public_key()), key_type)
                cert.verify_directly_issued_by(ca.certificate)

    def test_no_webhook(self) -> None:
        """Without a webhook there is no URI SAN."""
        cert, _ = issue_client(make_ca(), webhook=None)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.UniformResourceIdentifier), [])

    def test_dates(self) -> None:
        """notBefore is five minutes before now; notAfter is now plus the validity."""
        cert, _ = issue_client(make_ca(), validity=timedelta(days=30))
        self.assertEqual(cert.not_valid_before_utc, NOW - timedelta(minutes=5))
        self.assertEqual(cert.not_valid_after_utc, NOW + timedelta(days=30))

    def test_clamped_to_ca(self) -> None:
        """A certificate never outlives the CA that issued it."""
        ca = make_ca()
        late = ca.certificate.not_valid_after_utc - timedelta(days=10)
        cert, _ = issue_client(ca, now=late, validity=timedelta(days=365))
        self.assertEqual(cert.not_valid_after_utc, ca.certificate.not_valid_after_utc)

    def test_expired_ca(self) -> None:
        """Issuing from an expired CA is a ValueError, not a certificate dead on arrival."""
        ca = make_ca()
        after = ca.certificate.not_valid_after_utc + timedelta(seconds=1)
        self.assertRaises(ValueError, issue_client, ca, now=after)

    def test_invalid_request(self) -> None:
        """An invalid request is never signed, whatever the caller forgot to check."""
        ca = make_ca()
        key = generate_private_key("ed25519")
        e = self.assertRaises(
            ValueError,
            issue_client_certificate,
            ca,
            client_request(name="bad name", emails=()),
            key.public_key(),
            NOW,
        )
        self.assertEqual(
            str(e),
            "--name 'bad name': may contain only ASCII letters, digits, '.', '_' and '-'; "
            "--email: at least one sender address is required",
        )

    def test_serials_unique(self) -> None:
        """Each certificate gets its own random serial."""
        ca = make_ca()
        self.assertNotEqual(issue_client(ca)[0].serial_number, issue_client(ca)[0].serial_number)

    def test_normalize_sender(self) -> None:
        """Local part kept as written, domain lowercased."""
        self.assertEqual(normalize_sender("NoReply@Ataca.IO"), "NoReply@ataca.io")


class IssueServerTests(SynchronousTestCase):
    def test_contents(self) -> None:
        """DNS names and IP literals become the right SAN types; EKU is serverAuth only."""
        ca = make_ca()
        cert, _ = issue_server(
            ca, "MX.Example.com", ("localhost", "127.0.0.1", "::1", "mx.example.com")
        )
        self.assertEqual(cert.subject.rfc4514_string(), "CN=MX.Example.com,O=Rail")
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["mx.example.com", "localhost"])
        self.assertEqual(
            san.get_values_for_type(x509.IPAddress),
            [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")],
        )
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(eku), [ExtendedKeyUsageOID.SERVER_AUTH])
        self.assertFalse(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        self.assertEqual(cert.not_valid_after_utc, NOW + timedelta(days=397))
        cert.verify_directly_issued_by(ca.certificate)

    def test_long_hostname(self) -> None:
        """A hostname longer than a CN may be is carried by the SAN alone."""
        hostname = ("a" * 60 + ".") * 2 + "example"
        key = generate_private_key("ecdsa-p256")
        cert = issue_server_certificate(make_ca(), hostname, (), key.public_key(), NOW)
        self.assertEqual(cert.subject.rfc4514_string(), "O=Rail")
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), [hostname])
