"""Tests for :mod:`rail.delivery.dane`: which TLSA records count and when a chain matches."""

from __future__ import annotations

import datetime

from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.dane import DANE_EE, DANE_TA, TLSARecord, check_chain, usable_records
from tests.support.danecerts import NOW, issue, tlsa_for

_MX = "mx.dest.test"


class _Chains:
    """One PKI shared by the tests: root -> intermediate -> server (for the MX name)."""

    root = issue("Test Root", ca=True)
    intermediate = issue("Test Intermediate", issuer=root, ca=True)
    server = issue(_MX, issuer=intermediate, dns_names=[_MX])
    other = issue("other.test", issuer=intermediate, dns_names=["other.test"])
    stranger_root = issue("Stranger Root", ca=True)


class UsableTests(SynchronousTestCase):
    def test_only_dane_ta_and_ee_with_known_selector_and_matching_are_usable(self) -> None:
        """PKIX-TA(0)/PKIX-EE(1), unknown selectors and unknown matching types are not
        usable for SMTP (RFC 7672 §3.1.3); DANE-TA(2)/DANE-EE(3) with 0/1 and 0/1/2 are."""
        records = [
            TLSARecord(0, 1, 1, b"x"),
            TLSARecord(1, 0, 1, b"x"),
            TLSARecord(3, 2, 1, b"x"),
            TLSARecord(3, 1, 3, b"x"),
            TLSARecord(4, 1, 1, b"x"),
            TLSARecord(2, 0, 0, b"x"),
            TLSARecord(3, 1, 2, b"y"),
        ]
        self.assertEqual(usable_records(records), (records[5], records[6]))

    def test_presentation_form_round_trips(self) -> None:
        """``from_text`` reads the zone-file form (hex may be split by spaces); ``str``
        writes it back."""
        record = TLSARecord.from_text("3 1 1 AB12 cd34")
        self.assertEqual(record, TLSARecord(3, 1, 1, bytes.fromhex("ab12cd34")))
        self.assertEqual(str(record), "3 1 1 ab12cd34")

    def test_no_usable_record_is_ok_unauthenticated(self) -> None:
        """A TLSA RRset with nothing usable asks for TLS without authentication: any chain
        (even none) passes, and the reason says so."""
        verdict = check_chain([TLSARecord(1, 1, 1, b"x")], [], [_MX], NOW)
        self.assertTrue(verdict.ok)
        self.assertIn("not authenticated", verdict.reason)


class DaneEETests(SynchronousTestCase):
    def test_every_selector_and_matching_type_matches_the_leaf(self) -> None:
        """DANE-EE matches the server's certificate by full certificate or SPKI, exactly,
        by SHA-256 or by SHA-512."""
        chain = _Chains.server.presented()
        for selector in (0, 1):
            for matching in (0, 1, 2):
                record = tlsa_for(_Chains.server.certificate, DANE_EE, selector, matching)
                verdict = check_chain([record], chain, [_MX], NOW)
                self.assertTrue(verdict.ok, (selector, matching, verdict.reason))
                self.assertEqual(verdict.reason, f"DANE-EE record {selector} {matching}")

    def test_no_name_or_expiry_check(self) -> None:
        """DANE-EE ignores the certificate's names and validity (RFC 7672 §3.1.1): an
        expired self-signed certificate for another name passes when its key matches."""
        lone = issue(
            "whatever.invalid",
            not_before=NOW - datetime.timedelta(days=400),
            not_after=NOW - datetime.timedelta(days=100),
        )
        record = tlsa_for(lone.certificate, DANE_EE, 1, 1)
        self.assertTrue(check_chain([record], [lone.certificate], [_MX], NOW).ok)

    def test_other_certificate_does_not_match(self) -> None:
        """A DANE-EE record of another key fails with a reason naming the mismatch."""
        record = tlsa_for(_Chains.other.certificate, DANE_EE, 1, 1)
        verdict = check_chain([record], _Chains.server.presented(), [_MX], NOW)
        self.assertFalse(verdict.ok)
        self.assertEqual(verdict.reason, "no TLSA record matches the server's certificate chain")

    def test_dane_ee_does_not_match_an_issuer(self) -> None:
        """A DANE-EE record matches the server's own certificate only, never one above it."""
        record = tlsa_for(_Chains.intermediate.certificate, DANE_EE, 0, 1)
        self.assertFalse(check_chain([record], _Chains.server.presented(), [_MX], NOW).ok)

    def test_one_matching_record_among_several_is_enough(self) -> None:
        """Records are alternatives (a key roll publishes old and new): one match passes."""
        records = [
            tlsa_for(_Chains.other.certificate, DANE_EE, 1, 1),
            TLSARecord(3, 1, 1, b"\x00" * 32),
            tlsa_for(_Chains.server.certificate, DANE_EE, 1, 2),
        ]
        self.assertTrue(check_chain(records, _Chains.server.presented(), [_MX], NOW).ok)

    def test_empty_chain_fails(self) -> None:
        """No certificate at all cannot satisfy a usable record."""
        record = tlsa_for(_Chains.server.certificate, DANE_EE, 1, 1)
        verdict = check_chain([record], [], [_MX], NOW)
        self.assertEqual(
            (verdict.ok, verdict.reason), (False, "the server presented no certificate")
        )


class DaneTATests(SynchronousTestCase):
    def test_intermediate_as_anchor(self) -> None:
        """A DANE-TA record for the intermediate the server sends authenticates a server
        certificate that chains to it and names the MX host."""
        for selector in (0, 1):
            for matching in (0, 1, 2):
                record = tlsa_for(_Chains.intermediate.certificate, DANE_TA, selector, matching)
                verdict = check_chain([record], _Chains.server.presented(), [_MX], NOW)
                self.assertTrue(verdict.ok, (selector, matching, verdict.reason))
                self.assertEqual(verdict.reason, f"DANE-TA record {selector} {matching}")

    def test_root_as_anchor_when_sent(self) -> None:
        """A DANE-TA record for the root works when the server includes the root."""
        record = tlsa_for(_Chains.root.certificate, DANE_TA, 1, 1)
        chain = _Chains.server.presented(include_root=True)
        self.assertTrue(check_chain([record], chain, [_MX], NOW).ok)

    def test_anchor_not_sent_fails(self) -> None:
        """RFC 7672 §3.1.2 makes the server send its trust anchor: a root it leaves out
        cannot be matched."""
        record = tlsa_for(_Chains.root.certificate, DANE_TA, 1, 1)
        verdict = check_chain([record], _Chains.server.presented(), [_MX], NOW)
        self.assertFalse(verdict.ok)

    def test_name_must_match_the_mx_host(self) -> None:
        """DANE-TA checks the name: a certificate for another host under the same anchor
        fails, with the verifier's reason."""
        record = tlsa_for(_Chains.intermediate.certificate, DANE_TA, 1, 1)
        verdict = check_chain([record], _Chains.other.presented(), [_MX], NOW)
        self.assertFalse(verdict.ok)
        self.assertIn("DANE-TA anchor", verdict.reason)

    def test_any_reference_identifier_may_match(self) -> None:
        """The names after the MX host (e.g. the next-hop domain) are also accepted."""
        record = tlsa_for(_Chains.intermediate.certificate, DANE_TA, 1, 1)
        chain = _Chains.other.presented()
        self.assertTrue(check_chain([record], chain, [_MX, "other.test"], NOW).ok)

    def test_expired_server_certificate_fails(self) -> None:
        """DANE-TA, unlike DANE-EE, checks validity: an expired server certificate fails."""
        expired = issue(
            _MX,
            issuer=_Chains.intermediate,
            dns_names=[_MX],
            not_before=NOW - datetime.timedelta(days=60),
            not_after=NOW - datetime.timedelta(days=1),
        )
        record = tlsa_for(_Chains.intermediate.certificate, DANE_TA, 1, 1)
        self.assertFalse(check_chain([record], expired.presented(), [_MX], NOW).ok)

    def test_anchor_must_have_signed_the_chain(self) -> None:
        """A stranger's CA certificate appended to the chain and named by the record does
        not authenticate a server certificate it did not sign."""
        record = tlsa_for(_Chains.stranger_root.certificate, DANE_TA, 1, 1)
        chain = (*_Chains.server.presented(), _Chains.stranger_root.certificate)
        self.assertFalse(check_chain([record], chain, [_MX], NOW).ok)

    def test_dane_ta_does_not_match_the_leaf(self) -> None:
        """A DANE-TA record naming the server's own certificate is not a trust anchor."""
        record = tlsa_for(_Chains.server.certificate, DANE_TA, 0, 1)
        self.assertFalse(check_chain([record], _Chains.server.presented(), [_MX], NOW).ok)
