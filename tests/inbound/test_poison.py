"""Inbound parsing of hostile messages: the same results as before, in linear time, and
no exception for input the stdlib cannot read."""

from __future__ import annotations

import random
from email import policy as email_policy

import dkim
from cryptography.hazmat.primitives import serialization
from dkim.canonicalization import Relaxed
from twisted.trial.unittest import SynchronousTestCase

from rail.dkim.records import txt_value
from rail.dkim.sign import from_domain, sign
from rail.inbound.dkimverify import MAX_SIGNATURE_SIZE, _parsed, _relaxed_body, verify_dkim
from rail.inbound.dmarc import author_domain
from rail.inbound.policy import decode_subject
from rail.inbound.results import remove_own_results
from tests.dkim.helpers import KEYS, NOW

_PIECES = [b"A: b", b"\r\n", b" ", b"\t", b"x", b":", b"From ", b"\r\n\r\n", b"\n", b"\r"]
_FROM = b"From: App <noreply@example.com>\r\n"


class _Lookup:
    """The test keys' records, from memory."""

    def txt(self, name: str) -> tuple[bytes, ...]:
        records = {
            f"{KEYS.rsa_selector}._domainkey.{KEYS.domain}": KEYS.rsa_key.public_key(),
            f"{KEYS.ed25519_selector}._domainkey.{KEYS.domain}": KEYS.ed25519_key.public_key(),
        }
        key = records.get(name.rstrip("."))
        return () if key is None else (txt_value(key).encode("ascii"),)

    def query(self, name: str, rtype: object) -> tuple[object, ...]:
        return ()


def _dkimpy(data: bytes) -> object:
    try:
        headers, body = dkim.rfc822_parse(data)
    except (dkim.MessageFormatError, IndexError):
        return "error"
    return [list(field) for field in headers], body


def _ours(data: bytes) -> object:
    try:
        message = _parsed(data)
    except dkim.MessageFormatError:
        return "error"
    return message.headers, message.body


class DKIMParseTests(SynchronousTestCase):
    def test_split_as_dkimpy(self) -> None:
        """Rail's split gives dkimpy's headers and body (or refuses what it refuses) for
        20,000 random inputs; dkimpy's own is quadratic in continuation lines."""
        rnd = random.Random(25)
        for _ in range(20_000):
            data = b"".join(rnd.choice(_PIECES) for _ in range(rnd.randint(0, 12)))
            self.assertEqual(_ours(data), _dkimpy(data), data)

    def test_relaxed_body_same_canonical_form(self) -> None:
        """A body prepared by _relaxed_body canonicalizes (relaxed) to what the raw body
        does, so its body hash is the same."""
        rnd = random.Random(26)
        pieces = [b" ", b"\t", b"x", b"\r\n", b"  \t ", b"\r\n\r\n"]
        for _ in range(20_000):
            body = b"".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 12)))
            self.assertEqual(
                Relaxed.canonicalize_body(_relaxed_body(body)), Relaxed.canonicalize_body(body)
            )

    def test_long_folds_and_space_runs_verify(self) -> None:
        """A signed message with an unsigned field folded over 50,000 lines and a body of
        lines with long runs of spaces passes both signatures."""
        data = _FROM + b"X-Long: a" + b"\r\n x" * 50_000 + b"\r\n\r\n"
        data += (b"x" + b" " * 900 + b"y  \r\n") * 200
        results = verify_dkim(_Lookup(), sign(data, KEYS, NOW) + data)
        self.assertEqual([r.result for r in results], ["pass", "pass"])

    def test_simple_body_canonicalization_verifies(self) -> None:
        """A c=simple/simple signature (dkimpy's signer) is checked against the body as
        received, trailing white space included."""
        data = _FROM + b"Subject: s\r\n\r\nline with trailing spaces   \r\n"
        pem = KEYS.rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        signature = dkim.sign(
            data,
            KEYS.rsa_selector.encode(),
            KEYS.domain.encode(),
            pem,
            canonicalize=(b"simple", b"simple"),
        )
        [result] = verify_dkim(_Lookup(), signature + data)
        self.assertEqual(result.result, "pass")
        altered = signature + data.replace(b"spaces   ", b"spaces")
        [result] = verify_dkim(_Lookup(), altered)
        self.assertEqual(result.result, "fail")

    def test_oversized_signature_not_evaluated(self) -> None:
        """A DKIM-Signature field longer than MAX_SIGNATURE_SIZE is permerror at once."""
        data = _FROM + b"\r\nbody\r\n"
        field = b"DKIM-Signature: v=1; h=from" + b" " * MAX_SIGNATURE_SIZE + b"x; b=; bh=\r\n"
        [result] = verify_dkim(_Lookup(), field + data)
        self.assertEqual((result.result, result.reason), ("permerror", "signature field too long"))


class HeaderReadingTests(SynchronousTestCase):
    def test_forged_results_behind_nested_comments_removed(self) -> None:
        """An Authentication-Results field with Rail's authserv-id after 5,000 nested
        comments is still recognized and removed; another authserv-id is kept."""
        nested = b"(" * 5000 + b"x" + b")" * 5000
        forged = b"Authentication-Results: " + nested + b" Rail.Test; spf=pass\r\n"
        other = b"Authentication-Results: " + nested + b" other.test; spf=pass\r\n"
        data = forged + other + b"Subject: s\r\n\r\nbody\r\n"
        self.assertEqual(
            remove_own_results(data, "rail.test"), other + b"Subject: s\r\n\r\nbody\r\n"
        )

    def test_unclosed_comment_is_not_own(self) -> None:
        """A comment that never closes hides no authserv-id: the field is kept."""
        data = b"Authentication-Results: (rail.test; spf=pass\r\n\r\nb"
        self.assertEqual(remove_own_results(data, "rail.test"), data)

    def test_author_domain_many_folds(self) -> None:
        """DMARC reads a From folded over 10,000 lines."""
        data = b"From: App\r\n" + b" x\r\n" * 10_000 + b" <a@Example.COM>\r\n\r\nb"
        self.assertEqual(author_domain(data), ("example.com", None))

    def test_nested_comments_unreadable(self) -> None:
        """A From with comments nested past the stdlib's recursion limit is unreadable:
        DMARC's permerror reason and no signing domain, not an exception."""
        data = b"From: " + b"(" * 5000 + b")" * 5000 + b" a@example.com\r\n\r\nb"
        self.assertEqual(author_domain(data), (None, "From field unreadable"))
        self.assertIsNone(from_domain(data))

    def test_long_subject_decoded_in_pieces(self) -> None:
        """A Subject longer than a piece is decoded piece by piece, each as the stdlib
        decodes it: words and encoded words alike."""
        raw = " ".join(["=?utf-8?q?caf=C3=A9?= plain"] * 3000)
        self.assertEqual(decode_subject(raw), " ".join(["café plain"] * 3000))
        short = "=?utf-8?q?caf=C3=A9?= plain"
        expected = str(email_policy.default.header_factory("subject", short))
        self.assertEqual(decode_subject(short), expected)

    def test_long_word_subject(self) -> None:
        """A Subject without white space is cut anyway and decoded."""
        self.assertEqual(decode_subject("é" * 20_000), "é" * 20_000)
