"""The per-destination TLS requirement: precedence DANE > MTA-STS > opportunistic, and
what each mode demands; the TLS-RPT outcome value."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.stspolicy import STSPolicy
from rail.delivery.tlspolicy import (
    OPPORTUNISTIC,
    DANEResult,
    TLSRequirement,
    choose_requirement,
    smarthost_requirement,
)
from rail.delivery.tlsreport import DISCARD, TLSOutcome, outcome_for

ENFORCE = STSPolicy(
    mode="enforce",
    max_age=600,
    mx=("mx1.example", "*.mx.example"),
    text="version: STSv1\nmode: enforce\nmx: mx1.example\nmx: *.mx.example\nmax_age: 600\n",
)


class ChooseTests(SynchronousTestCase):
    def test_no_policy(self) -> None:
        """Without MTA-STS or DANE: opportunistic, reported as no-policy-found."""
        req = choose_requirement("Example.", "mx1.example", sts=None)
        self.assertEqual(req.mode, "opportunistic")
        self.assertEqual(req.policy_domain, "example")
        self.assertEqual(req.policy_type, "no-policy-found")
        self.assertFalse(req.tls_required)
        self.assertFalse(req.webpki)
        self.assertTrue(req.plaintext_fallback)
        self.assertTrue(req.allows("anything.test"))

    def test_none_mode_is_no_policy(self) -> None:
        """A policy in mode none is treated as no policy."""
        none = STSPolicy(mode="none", max_age=1, mx=())
        self.assertEqual(choose_requirement("example", sts=none).mode, "opportunistic")

    def test_enforce(self) -> None:
        """enforce: TLS required, web PKI against the MX name, only matching hosts."""
        req = choose_requirement("example", "mx1.example", sts=ENFORCE, sts_id="a1", ca_file="/ca")
        self.assertEqual(req.mode, "sts-enforce")
        self.assertTrue(req.tls_required)
        self.assertTrue(req.webpki)
        self.assertFalse(req.plaintext_fallback)
        self.assertEqual((req.policy_id, req.ca_file, req.policy_type), ("a1", "/ca", "sts"))
        self.assertEqual(req.policy_strings[0], "version: STSv1")
        self.assertTrue(req.allows("mx1.example"))
        self.assertTrue(req.allows("b.mx.example"))
        self.assertFalse(req.allows("evil.example"))
        self.assertEqual(req.names_for("MX1.example."), ("mx1.example",))

    def test_testing(self) -> None:
        """testing: verification attempted, nothing excluded, plaintext still allowed."""
        policy = STSPolicy(mode="testing", max_age=1, mx=("mx1.example",))
        req = choose_requirement("example", sts=policy)
        self.assertEqual(req.mode, "sts-testing")
        self.assertTrue(req.webpki)
        self.assertFalse(req.tls_required)
        self.assertTrue(req.plaintext_fallback)
        self.assertTrue(req.allows("other.example"))
        self.assertFalse(req.matches("other.example"))

    def test_dane_wins(self) -> None:
        """Usable TLSA records take precedence over MTA-STS (RFC 8461 §2)."""
        dane = DANEResult(tlsa=("3 1 1 ab",), names=("mx1.example", "example"))
        req = choose_requirement("example", "mx1.example", sts=ENFORCE, dane=dane)
        self.assertEqual(req.mode, "dane")
        self.assertEqual(req.tlsa, ("3 1 1 ab",))
        self.assertEqual(req.names_for("mx1.example"), ("mx1.example", "example"))
        self.assertEqual(req.policy_type, "tlsa")
        self.assertTrue(req.tls_required)
        self.assertTrue(req.allows("not-in-sts.example"))

    def test_dane_without_records(self) -> None:
        """A DANE result without records leaves MTA-STS in charge."""
        req = choose_requirement("example", "mx1.example", sts=ENFORCE, dane=DANEResult())
        self.assertEqual(req.mode, "sts-enforce")

    def test_smarthost(self) -> None:
        """A smarthost with required or implicit TLS verifies its own name."""
        req = smarthost_requirement("Relay.Example", "implicit", "/ca.pem")
        self.assertEqual(req.mode, "smarthost-required")
        self.assertTrue(req.implicit)
        self.assertEqual(req.names_for("10.0.0.1"), ("relay.example",))
        self.assertFalse(smarthost_requirement("r", "required").implicit)
        self.assertIs(smarthost_requirement("r", "opportunistic"), OPPORTUNISTIC)


class OutcomeTests(SynchronousTestCase):
    def test_outcome_for(self) -> None:
        """An outcome carries the requirement's policy domain, type and strings."""
        req = choose_requirement("example", sts=ENFORCE)
        outcome = outcome_for(req, "mx1.example", "192.0.2.1", "certificate-host-mismatch", "x")
        self.assertEqual(outcome.policy_domain, "example")
        self.assertEqual(outcome.policy_type, "sts")
        self.assertEqual(outcome.policy_strings, req.policy_strings)
        self.assertFalse(outcome.succeeded)
        self.assertTrue(outcome_for(TLSRequirement(), "h", None).succeeded)

    def test_unknown_result(self) -> None:
        """Only RFC 8460 result types (or success) are accepted."""
        with self.assertRaises(ValueError):
            TLSOutcome(policy_domain="d", policy_type="sts", result="oops")

    def test_discard(self) -> None:
        """The discarding sink takes outcomes and does nothing."""
        DISCARD.record(TLSOutcome(policy_domain="d", policy_type="no-policy-found"))
