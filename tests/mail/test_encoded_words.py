"""The API's scan for RFC 2047 encoded words finds what the regular expression finds
(the same as ``email.header.decode_header``) without its quadratic rescanning."""

from __future__ import annotations

import random
import re

from twisted.trial.unittest import SynchronousTestCase

from rail.mail.request import _encoded_words, parse_request

_PATTERN = re.compile(r"=\?[^?]*\?[qQbB]\?.*?\?=", re.DOTALL)


class EncodedWordTests(SynchronousTestCase):
    def test_same_as_pattern(self) -> None:
        """For 50,000 random strings of the characters that matter, the same words in
        the same order."""
        rnd = random.Random(2047)
        pieces = ["=", "?", "q", "B", "x", " ", "\n", "=?", "?=", "utf-8"]
        for _ in range(50_000):
            value = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 14)))
            expected = [match.group() for match in _PATTERN.finditer(value)]
            self.assertEqual(list(_encoded_words(value)), expected, value)

    def test_unclosed_prefixes(self) -> None:
        """Many ``=?x?q?`` that never close are no encoded word (the case the pattern
        scanned to the end of the value from each of)."""
        self.assertEqual(list(_encoded_words("=?x?q? " * 100_000)), [])

    def test_control_in_encoded_word_refused(self) -> None:
        """An encoded word decoding to CR LF among many harmless ones is still found."""
        subject = "=?utf-8?q?ok?= " * 1000 + "=?utf-8?q?a=0D=0AX:_y?="
        body = (
            b'{"from": "a@example.com", "to": ["b@example.org"], "body_text": "b",'
            b' "subject": "' + subject.encode() + b'"}'
        )
        refused = parse_request(body)
        self.assertEqual(getattr(refused, "code", None), "INVALID_REQUEST")
        self.assertIn("subject", getattr(refused, "message", ""))
