"""Header values too long for the email package's parser, written by Rail: they unfold or
decode to the value given, keep their lines short, and stay byte-identical to the
``email`` package's output up to the registry's limit."""

from __future__ import annotations

import base64
import re
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage

from twisted.trial.unittest import SynchronousTestCase

from rail.mail.addresses import Mailbox
from rail.mail.compose import build_message
from rail.mail.headers import (
    ASCII_POLICY,
    UTF8_POLICY,
    HeaderLimits,
    header_excess,
    write_address_field,
    write_field,
)
from rail.mail.longfields import REGISTRY_MAX, fold_text, join_address_fields
from rail.mail.request import ComposeError, SendRequest

_ENCODED = re.compile(rb"=\?utf-8\?b\?([A-Za-z0-9+/=]*)\?=")


def _read(field: bytes, name: str) -> str:
    """The value as the stdlib reads the written field back (encoded words decoded)."""
    message = message_from_bytes(field + b"\r\nbody\r\n", policy=email_policy.default)
    return str(message[name])


def _lines(data: bytes) -> list[bytes]:
    return data.removesuffix(b"\r\n").split(b"\r\n")


class FoldTextTests(SynchronousTestCase):
    def test_ascii_unfolds_to_value(self) -> None:
        """Text that may go as it is is only folded: removing the CRLFs gives the field
        back, runs of white space included, and lines stay within 78 octets."""
        value = "  Order  42\tshipped " * 500
        data = fold_text("Subject", value, raw_utf8=False)
        self.assertEqual(data.replace(b"\r\n", b""), b"Subject:" + value.encode())
        self.assertLessEqual(max(map(len, _lines(data))), 78)
        self.assertTrue(all(line[:1] in (b" ", b"\t") for line in _lines(data)[1:]))

    def test_no_whitespace_only_line(self) -> None:
        """A fold never leaves a continuation line of white space alone."""
        data = fold_text("Subject", ("x" * 70 + " " * 20) * 50, raw_utf8=False)
        self.assertTrue(all(line.strip(b" \t") for line in _lines(data)))

    def test_utf8_raw_under_smtputf8(self) -> None:
        """Under SMTPUTF8 non-ASCII text goes as UTF-8, folded."""
        value = "Bestätigung Ihrer Bestellung " * 200
        data = fold_text("Subject", value, raw_utf8=True)
        self.assertEqual(data.replace(b"\r\n", b""), b"Subject: " + value.encode())

    def test_encoded_words_decode_to_value(self) -> None:
        """Non-ASCII text for a 7-bit message becomes base64 encoded words of whole UTF-8
        characters, within 78 octets after the first line, that decode to the value."""
        value = "Grüße 日本語 " * 400
        data = fold_text("Subject", value, raw_utf8=False)
        self.assertTrue(data.isascii())
        words = _ENCODED.findall(data)
        decoded = [base64.b64decode(word).decode("utf-8") for word in words]  # each whole
        self.assertEqual("".join(decoded), value)
        self.assertLessEqual(max(map(len, _lines(data)[1:])), 78)
        self.assertEqual(_read(data, "subject"), value)

    def test_long_word_encoded(self) -> None:
        """A word too long for any line (over 998 octets) is written as encoded words,
        ASCII or not."""
        for value in ("x" * 5000, "ö" * 3000):
            data = fold_text("Subject", value, raw_utf8=True)
            self.assertLessEqual(max(map(len, _lines(data))), 998)
            self.assertEqual(_read(data, "subject"), value)


class WriteFieldTests(SynchronousTestCase):
    def test_registry_up_to_limit(self) -> None:
        """Up to REGISTRY_MAX characters a field is what EmailMessage writes."""
        value = ("wörd " * REGISTRY_MAX)[: REGISTRY_MAX - 1] + "x"
        message = EmailMessage(policy=ASCII_POLICY)
        message["Subject"] = value
        expected = message.as_bytes().split(b"\r\n\r\n")[0] + b"\r\n"
        self.assertEqual(write_field("Subject", value, ASCII_POLICY).data, expected)

    def test_long_subject_read_back(self) -> None:
        """Past the limit the value reads back the same under either policy."""
        for write_policy in (ASCII_POLICY, UTF8_POLICY):
            value = "Grüße aus Köln, " * 1000
            written = write_field("Subject", value, write_policy)
            self.assertEqual(written.value, value)
            self.assertEqual(_read(written.data, "subject").strip(), value.strip())

    def test_long_structured_refused(self) -> None:
        """Only unstructured fields may be longer than the registry's limit."""
        self.assertRaises(ValueError, write_field, "Orig-Date", "x" * 3000, ASCII_POLICY)

    def test_long_address_list(self) -> None:
        """A long address list is written a mailbox at a time and joined with folds; the
        stdlib reads every mailbox back."""
        mailboxes = [Mailbox(f"Jörg Müller {n}", f"u{n}", "example.org") for n in range(300)]
        written = write_address_field("To", mailboxes, ASCII_POLICY)
        message = message_from_bytes(written.data + b"\r\nb\r\n", policy=email_policy.default)
        addresses = message["to"].addresses
        self.assertEqual([a.addr_spec for a in addresses], [m.address for m in mailboxes])
        self.assertEqual(addresses[7].display_name, "Jörg Müller 7")
        self.assertLessEqual(max(map(len, _lines(written.data))), 78)

    def test_join_address_fields(self) -> None:
        """Values join with a comma and a fold; a value the registry began with a fold
        loses that fold rather than leave an empty line."""
        joined = join_address_fields("To", [b"To: a@x.example\r\n", b"To:\r\n b@y.example\r\n"])
        self.assertEqual(joined, b"To: a@x.example,\r\n b@y.example\r\n")

    def test_compose_refuses_long_structured_header(self) -> None:
        """The API answers INVALID_REQUEST for a structured header value that long."""
        request = SendRequest(
            sender=Mailbox("", "a", "example.com"),
            to=(Mailbox("", "b", "example.org"),),
            body_text="hi",
            headers=(("Orig-Date", "x" * 3000),),
        )
        result = build_message(request, message_id="m", hostname="rail.test", now=0.0)
        assert isinstance(result, ComposeError)
        self.assertEqual(result.code, "INVALID_REQUEST")
        self.assertIn("Orig-Date", result.message)


class HeaderExcessTests(SynchronousTestCase):
    limits = HeaderLimits(size=100, fields=3)

    def test_exact_size(self) -> None:
        """The size is the octets before the empty line: 100 pass, 101 do not."""
        field = b"X: " + b"a" * 95 + b"\r\n"  # 100 octets
        self.assertIsNone(header_excess(field + b"\r\nbody", self.limits))
        self.assertEqual(
            header_excess(b"X: b" + field[3:] + b"\r\nbody", self.limits), "header_size"
        )

    def test_exact_fields(self) -> None:
        """Three fields pass, four do not; continuation lines are not fields."""
        three = b"A: 1\r\nB: 2\r\n 2\r\n 2\r\nC: 3\r\n\r\n"
        self.assertIsNone(header_excess(three, self.limits))
        self.assertEqual(header_excess(b"D: 4\r\n" + three, self.limits), "header_fields")

    def test_body_not_counted(self) -> None:
        """Whatever follows the empty line, or a line that is not a field, is body."""
        self.assertIsNone(header_excess(b"A: 1\r\n\r\n" + b"x: y\r\n" * 1000, self.limits))
        self.assertIsNone(header_excess(b"A: 1\r\nnot a field\r\n" + b"x" * 1000, self.limits))

    def test_long_field_name(self) -> None:
        """A field whose name runs past the limit is over it, though its colon is
        beyond what is read."""
        self.assertEqual(header_excess(b"X" * 500 + b": v\r\n\r\n", self.limits), "header_size")

    def test_reads_bounded(self) -> None:
        """Only the first limit's worth of octets decides: a 5 MB field is refused after
        reading about ``size`` octets of it (the answer does not depend on the rest)."""
        huge = b"X: " + b"a" * 5_000_000
        self.assertEqual(header_excess(huge, self.limits), "header_size")
        self.assertEqual(header_excess(huge + b"\x00\r\n\r\n", self.limits), "header_size")
