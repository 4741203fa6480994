"""Bounce classification: only a dead address is hard (and so suppressed)."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from rail.events.classify import classify


class ClassifyTests(TestCase):
    def test_enhanced_codes(self) -> None:
        """The enhanced code decides: dead mailbox hard, full mailbox soft, block policy."""
        cases = {
            ("5.1.1", "Recipient address rejected"): "hard",
            ("5.1.10", "null MX"): "hard",
            ("5.2.1", "mailbox disabled"): "hard",
            ("5.4.4", "unable to route"): "hard",
            ("5.2.2", "mailbox full"): "soft",
            ("5.3.4", "message too big"): "soft",
            ("5.7.1", "user unknown in relay table"): "policy",
            ("5.7.26", "DMARC failed"): "policy",
            ("4.2.0", "try later"): "soft",
            ("5.0.0", "no"): "unknown",
            ("5.1.0", "Address rejected"): "hard",
        }
        for (enhanced, text), expected in cases.items():
            self.assertEqual(classify(550, enhanced, text), expected, (enhanced, text))

    def test_without_enhanced_code(self) -> None:
        """Without an enhanced code, phrases and the basic code decide."""
        self.assertEqual(classify(550, None, "User unknown"), "hard")
        self.assertEqual(classify(554, None, "Listed on Spamhaus"), "policy")
        self.assertEqual(classify(452, None, "too many recipients"), "soft")
        self.assertEqual(classify(552, None, "size"), "soft")
        self.assertEqual(classify(554, None, "transaction failed"), "unknown")
        self.assertEqual(classify(None, "garbage", "x"), "unknown")
