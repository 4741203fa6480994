"""The pending-challenge registry shared by the ACME client and port 80."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.acme.challenges import PendingChallenges, is_token


class PendingChallengesTests(SynchronousTestCase):
    def test_add_get_remove(self) -> None:
        """A token answers its key authorization until removed; removing twice is fine."""
        pending = PendingChallenges()
        self.assertIsNone(pending.get("tok"))
        pending.add("tok", "tok.thumb")
        self.assertEqual(pending.get("tok"), "tok.thumb")
        self.assertEqual(len(pending), 1)
        pending.remove("tok")
        pending.remove("tok")
        self.assertIsNone(pending.get("tok"))
        self.assertEqual(len(pending), 0)

    def test_tokens_are_base64url(self) -> None:
        """Only base64url strings of at most 256 characters are tokens."""
        self.assertTrue(is_token("aB3_-x"))
        for bad in ["", "a/b", "a.b", "a=", "../x", "é", "a" * 257]:
            self.assertFalse(is_token(bad), bad)
        self.assertRaises(ValueError, PendingChallenges().add, "a/b", "x")
