"""Tests for rail.pki.ca: the shape of Rail's CA certificate."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import SynchronousTestCase

from rail.pki.ca import create_ca, signature_hash
from rail.pki.keys import KEY_TYPES, generate_private_key, key_type_of

from .helpers import NOW


class CreateCATests(SynchronousTestCase):
    def test_extensions(self) -> None:
        """The CA may sign end-entity certificates and CRLs only (path length 0)."""
        ca = create_ca("Rail CA mx.example", NOW)
        cert = ca.certificate
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(constraints.critical)
        self.assertEqual(constraints.value, x509.BasicConstraints(ca=True, path_length=0))
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
        self.assertTrue(usage.critical)
        self.assertTrue(usage.value.key_cert_sign)
        self.assertTrue(usage.value.crl_sign)
        self.assertTrue(usage.value.digital_signature)
        self.assertFalse(usage.value.key_encipherment)
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        self.assertEqual(ski, x509.SubjectKeyIdentifier.from_public_key(cert.public_key()))

    def test_names_and_dates(self) -> None:
        """Subject is CN=<name>,O=Rail, self-issued, back-dated five minutes, ten years long."""
        cert = create_ca("Rail CA mx.example", NOW).certificate
        self.assertEqual(cert.subject.rfc4514_string(), "CN=Rail CA mx.example,O=Rail")
        self.assertEqual(cert.issuer, cert.subject)
        self.assertEqual(
            cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
            "Rail CA mx.example",
        )
        self.assertEqual(cert.not_valid_before_utc, NOW - timedelta(minutes=5))
        self.assertEqual(cert.not_valid_after_utc, NOW + timedelta(days=3652))
        self.assertGreater(cert.serial_number, 0)
        cert.verify_directly_issued_by(cert)

    def test_key_types(self) -> None:
        """A CA can be made with each key type and its certificate verifies itself."""
        for key_type in KEY_TYPES:
            ca = create_ca("Rail CA x", NOW, key_type, timedelta(days=30))
            self.assertEqual(key_type_of(ca.certificate.public_key()), key_type)
            self.assertEqual(ca.certificate.not_valid_after_utc, NOW + timedelta(days=30))
            ca.certificate.verify_directly_issued_by(ca.certificate)

    def test_serials_differ(self) -> None:
        """Two CAs never share a serial (random 159-bit serials)."""
        self.assertNotEqual(
            create_ca("a", NOW).certificate.serial_number,
            create_ca("a", NOW).certificate.serial_number,
        )


class SignatureHashTests(SynchronousTestCase):
    def test_choice(self) -> None:
        """Ed25519 signs with no separate hash; EC and RSA keys sign with SHA-256."""
        self.assertIsNone(signature_hash(generate_private_key("ed25519")))
        self.assertIsInstance(signature_hash(generate_private_key("ecdsa-p256")), hashes.SHA256)
        self.assertIsInstance(signature_hash(generate_private_key("rsa2048")), hashes.SHA256)
