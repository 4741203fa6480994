"""Tests for rail.pki.crl: revocations exported as a CRL signed by Rail's CA."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.trial.unittest import SynchronousTestCase

from rail.pki.crl import build_crl, crl_pem, parse_crl, revoked_serials
from rail.pki.keys import KEY_TYPES

from .helpers import NOW, issue_client, make_ca


class BuildCRLTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """Revoked serials survive PEM export and verification, for every CA key type."""
        for key_type in KEY_TYPES:
            ca = make_ca(key_type=key_type)
            serials = [issue_client(ca)[0].serial_number, 7, 2**158 + 1]
            crl = build_crl(ca, [(s, NOW - timedelta(hours=1)) for s in serials], NOW)
            loaded = parse_crl(crl_pem(crl))
            self.assertEqual(revoked_serials(loaded, ca.certificate), frozenset(serials))

    def test_der(self) -> None:
        """A DER CRL parses too."""
        ca = make_ca()
        crl = build_crl(ca, [(5, NOW)], NOW)
        loaded = parse_crl(crl.public_bytes(serialization.Encoding.DER))
        self.assertEqual(revoked_serials(loaded, ca.certificate), frozenset({5}))

    def test_empty(self) -> None:
        """A CRL with no entries is valid and revokes nothing."""
        ca = make_ca()
        self.assertEqual(revoked_serials(build_crl(ca, [], NOW), ca.certificate), frozenset())

    def test_fields(self) -> None:
        """Issuer, dates, revocation dates and an increasing CRL number are set."""
        ca = make_ca()
        crl = build_crl(ca, [(5, NOW - timedelta(days=2))], NOW, timedelta(days=3))
        self.assertEqual(crl.issuer, ca.certificate.subject)
        self.assertEqual(crl.last_update_utc, NOW - timedelta(minutes=5))
        self.assertEqual(crl.next_update_utc, NOW + timedelta(days=3))
        entry = crl.get_revoked_certificate_by_serial_number(5)
        assert entry is not None
        self.assertEqual(entry.revocation_date_utc, NOW - timedelta(days=2))
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        later = build_crl(ca, [], NOW + timedelta(seconds=1))
        later_number = later.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        self.assertGreater(later_number, number)

    def test_other_ca_rejected(self) -> None:
        """A CRL signed by another CA with the same name does not verify."""
        ca = make_ca()
        impostor = make_ca()
        self.assertEqual(impostor.certificate.subject, ca.certificate.subject)
        crl = build_crl(impostor, [(5, NOW)], NOW)
        e = self.assertRaises(ValueError, revoked_serials, crl, ca.certificate)
        self.assertEqual(str(e), "CRL signature does not verify with the CA key")

    def test_other_ca_different_key_type(self) -> None:
        """A CRL signed with a key of another algorithm is rejected, not an exception leak."""
        ca = make_ca()
        impostor = make_ca(key_type="ecdsa-p256")
        crl = build_crl(impostor, [(5, NOW)], NOW)
        self.assertRaises(ValueError, revoked_serials, crl, ca.certificate)

    def test_other_issuer_rejected(self) -> None:
        """A CRL from a differently named CA is rejected by name."""
        ca = make_ca()
        other = make_ca(common_name="Someone else")
        e = self.assertRaises(
            ValueError, revoked_serials, build_crl(other, [], NOW), ca.certificate
        )
        self.assertEqual(
            str(e),
            "CRL issuer 'CN=Someone else,O=Rail' is not this CA ('CN=Rail CA test,O=Rail')",
        )

    def test_garbage(self) -> None:
        """Bytes that are not a CRL are a ValueError."""
        for data in [b"", b"junk", b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"]:
            e = self.assertRaises(ValueError, parse_crl, data)
            self.assertEqual(str(e), "not a PEM or DER certificate revocation list")
