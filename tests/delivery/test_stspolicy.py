"""MTA-STS records and policies parsed strictly, and MX pattern matching (RFC 8461)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.stspolicy import (
    MAX_AGE_LIMIT,
    PolicyError,
    STSPolicy,
    mx_matches,
    parse_policy,
    parse_sts_record,
)

POLICY = (
    "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\n"
    "mx: *.example.net\r\nmax_age: 86400\r\n"
)


class RecordTests(SynchronousTestCase):
    def test_id(self) -> None:
        """The id of the one v=STSv1 record; other TXT records are ignored."""
        self.assertEqual(parse_sts_record(["v=spf1 -all", "v=STSv1; id=20260101T0"]), "20260101T0")

    def test_none(self) -> None:
        """No v=STSv1 record: no policy (None)."""
        self.assertIsNone(parse_sts_record(["v=spf1 -all"]))
        self.assertIsNone(parse_sts_record([]))

    def test_extension_fields(self) -> None:
        """Whitespace around fields and unknown fields are accepted."""
        self.assertEqual(parse_sts_record(["v=STSv1;  id=abc ; ext=1;"]), "abc")

    def test_invalid(self) -> None:
        """Two records, a missing or malformed id, or a field without '=' is an error."""
        for texts in (
            ["v=STSv1; id=a", "v=STSv1; id=b"],
            ["v=STSv1;"],
            ["v=STSv1; id=has-dash"],
            ["v=STSv1; id=" + "a" * 33],
            ["v=STSv1; id"],
        ):
            with self.assertRaises(PolicyError, msg=texts):
                parse_sts_record(texts)


class PolicyTests(SynchronousTestCase):
    def test_valid(self) -> None:
        """Mode, max_age and mx patterns (lower-cased) come out; the text is kept."""
        policy = parse_policy(POLICY.replace("mx1", "MX1"))
        self.assertEqual(policy.mode, "enforce")
        self.assertEqual(policy.max_age, 86400)
        self.assertEqual(policy.mx, ("mx1.example.com", "*.example.net"))
        self.assertEqual(
            policy.policy_strings(),
            (
                "version: STSv1",
                "mode: enforce",
                "mx: MX1.example.com",
                "mx: *.example.net",
                "max_age: 86400",
            ),
        )

    def test_lf_and_extensions(self) -> None:
        """Bare LF line ends and unknown keys are accepted (RFC 8461 §3.2)."""
        policy = parse_policy(
            "version: STSv1\nmode: testing\nmx: a.example\nfoo: bar\nmax_age: 0\n"
        )
        self.assertEqual((policy.mode, policy.max_age, policy.mx), ("testing", 0, ("a.example",)))

    def test_none_mode_needs_no_mx(self) -> None:
        """A policy in none mode may list no mx."""
        self.assertEqual(parse_policy("version: STSv1\nmode: none\nmax_age: 10\n").mx, ())

    def test_max_age_limit(self) -> None:
        """max_age up to 31557600 is accepted, above it is an error."""
        text = "version: STSv1\nmode: none\nmax_age: {}\n"
        self.assertEqual(parse_policy(text.format(MAX_AGE_LIMIT)).max_age, MAX_AGE_LIMIT)
        with self.assertRaises(PolicyError):
            parse_policy(text.format(MAX_AGE_LIMIT + 1))

    def test_invalid(self) -> None:
        """Each malformed policy is refused rather than guessed at."""
        bad = [
            "",
            "mode: enforce\nversion: STSv1\nmx: a.example\nmax_age: 1\n",  # version not first
            "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmode: testing\nmx: a.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\n",  # no max_age
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\nmax_age: 2\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n",  # enforce without mx
            "version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a*.example\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: localhost\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx a.example\nmax_age: 1\n",
            "<html>version: STSv1</html>\n",
        ]
        for text in bad:
            with self.assertRaises(PolicyError, msg=text):
                parse_policy(text)


class MatchTests(SynchronousTestCase):
    def test_exact(self) -> None:
        """A plain pattern matches the same name, ignoring case and a trailing dot."""
        self.assertTrue(mx_matches("mx.example.com", "MX.Example.com."))
        self.assertFalse(mx_matches("mx.example.com", "mx2.example.com"))

    def test_wildcard_one_label(self) -> None:
        """*. stands for exactly one left-most label (RFC 8461 §4.1)."""
        self.assertTrue(mx_matches("*.example.com", "mx.example.com"))
        self.assertFalse(mx_matches("*.example.com", "example.com"))
        self.assertFalse(mx_matches("*.example.com", "a.b.example.com"))
        self.assertFalse(mx_matches("*.example.com", ".example.com"))

    def test_policy_allows(self) -> None:
        """STSPolicy.allows is any pattern matching."""
        policy = STSPolicy(mode="enforce", max_age=1, mx=("a.example", "*.b.example"))
        self.assertTrue(policy.allows("x.b.example"))
        self.assertFalse(policy.allows("b.example"))
