"""Relaxed canonicalization, against RFC 6376's rules and dkimpy's implementation."""

from __future__ import annotations

from dkim.canonicalization import Relaxed
from twisted.trial.unittest import SynchronousTestCase

from rail.dkim.canonical import relaxed_body, relaxed_field, select_fields, split_message

_BODIES = [
    b"",
    b"\r\n",
    b"\r\n\r\n\r\n",
    b"one line\r\n",
    b"one line",
    b"  leading and  inner \t spaces \t\r\n",
    b"a\r\n\r\n\r\nb\r\n\r\n",
    b"\t\r\n \r\n",
    b"tabs\tin\t\tthe middle\r\nand trailing tab\t\r\n\r\n",
    "8-bit: Grüße aus Köln \r\n".encode(),
]


class BodyTests(SynchronousTestCase):
    def test_rfc_example(self) -> None:
        """RFC 6376 §3.4.6's example body canonicalizes to its stated result."""
        self.assertEqual(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n")

    def test_same_as_dkimpy(self) -> None:
        """Bodies with trailing, inner and leading whitespace and empty lines give what
        dkimpy's relaxed canonicalization gives."""
        for body in _BODIES:
            self.assertEqual(relaxed_body(body), Relaxed.canonicalize_body(body), body)

    def test_empty(self) -> None:
        """An empty body, or one of empty lines only, is empty (RFC 6376 §3.4.4)."""
        for body in (b"", b"\r\n", b"\r\n\r\n", b" \r\n\t\r\n"):
            self.assertEqual(relaxed_body(body), b"", body)

    def test_last_line_without_crlf(self) -> None:
        """A last line without CRLF gets one, and loses its trailing WSP like any line."""
        self.assertEqual(relaxed_body(b"a\r\nlast \t "), b"a\r\nlast\r\n")


class HeaderTests(SynchronousTestCase):
    def test_rfc_example(self) -> None:
        """RFC 6376 §3.4.6's example header fields canonicalize to its stated result."""
        fields, _ = split_message(b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n")
        self.assertEqual([relaxed_field(name, value) for name, value in fields], [b"a:X", b"b:Y Z"])

    def test_same_as_dkimpy(self) -> None:
        """Folded fields, tabs and 8-bit values give what dkimpy gives."""
        raw = [
            (b"Subject", b"  Hello \t  world  "),
            (b"To", b" a@example.com,\r\n\tb@example.com"),
            (b"X-UTF8", " Grüße  aus\r\n  Köln".encode()),
        ]
        theirs = Relaxed.canonicalize_headers(raw)
        ours = [(relaxed_field(name.lower(), value) + b"\r\n") for name, value in raw]
        self.assertEqual(ours, [name + b":" + value for name, value in theirs])

    def test_split(self) -> None:
        """Fields keep their folding; the body starts after the first empty line."""
        fields, body = split_message(b"A: 1\r\n 2\r\nB:3\r\n\r\nbody\r\n\r\nmore\r\n")
        self.assertEqual(fields, [(b"a", b" 1\r\n 2"), (b"b", b"3")])
        self.assertEqual(body, b"body\r\n\r\nmore\r\n")

    def test_split_without_separator(self) -> None:
        """A message without the empty line is all header, with an empty body."""
        self.assertEqual(split_message(b"A: 1\r\n"), ([(b"a", b" 1")], b""))

    def test_split_without_header(self) -> None:
        """A message starting with the empty line has no fields."""
        self.assertEqual(split_message(b"\r\nbody\r\n"), ([], b"body\r\n"))

    def test_split_refuses_non_field(self) -> None:
        """A line that is neither a field nor a continuation is a ValueError."""
        with self.assertRaises(ValueError):
            split_message(b"A: 1\r\nno colon here\r\n\r\n")

    def test_select_bottom_up(self) -> None:
        """Repeated names take instances from the bottom; extra ones select nothing."""
        fields, _ = split_message(b"To: 1\r\nFrom: f\r\nTo: 2\r\n\r\n")
        self.assertEqual(
            select_fields(fields, [b"from", b"from", b"to", b"to", b"to"]),
            [b"from:f\r\n", b"to:2\r\n", b"to:1\r\n"],
        )
