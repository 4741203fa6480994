"""Header section parsing and completion on raw CRLF bytes."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.mail.headers import completed, format_date, parse_header_section


def _complete(data: bytes) -> bytes:
    return completed(
        data,
        parse_header_section(data),
        prepend=["Received: by x"],
        defaults=[("Date", "Date: D"), ("Message-ID", "Message-ID: <m@x>")],
    )


class ParseTests(SynchronousTestCase):
    def test_fields_and_folding(self) -> None:
        """Fields are found in order with lower-case names; folded lines are unfolded."""
        section = parse_header_section(
            b"From: a@x.example\r\nSubject: one\r\n two\r\nX-Y:z\r\n\r\nbody\r\n"
        )
        self.assertEqual(
            section.fields, (("from", "a@x.example"), ("subject", "one two"), ("x-y", "z"))
        )
        self.assertTrue(section.has_separator)
        self.assertEqual(section.addresses("from"), ["a@x.example"])

    def test_group_and_display_names(self) -> None:
        """Every address of a From field is returned, display names dropped."""
        section = parse_header_section(b'From: "A, B" <a@x.example>, c@y.example\r\n\r\n')
        self.assertEqual(section.addresses("from"), ["a@x.example", "c@y.example"])

    def test_unparsable_address(self) -> None:
        """A From field that is no address list yields what the parser made of it, which
        sender authorization then refuses."""
        section = parse_header_section(b"From: nobody\r\n\r\n")
        self.assertEqual(section.addresses("from"), ["nobody"])


class CompleteTests(SynchronousTestCase):
    def test_adds_missing_fields(self) -> None:
        """Missing Date and Message-ID are added at the end of the header section and
        Received goes first; the rest is unchanged."""
        self.assertEqual(
            _complete(b"Subject: s\r\n\r\nbody\r\n"),
            b"Received: by x\r\nSubject: s\r\nDate: D\r\nMessage-ID: <m@x>\r\n\r\nbody\r\n",
        )

    def test_keeps_existing_fields(self) -> None:
        """Fields present in any case are not added twice."""
        data = b"date: x\r\nMESSAGE-ID: <a@b>\r\n\r\nbody\r\n"
        self.assertEqual(_complete(data), b"Received: by x\r\n" + data)

    def test_message_without_headers(self) -> None:
        """A message that starts with body text gets headers and a separator, so its
        first line stays body."""
        self.assertEqual(
            _complete(b"Hi!\r\n"),
            b"Received: by x\r\nDate: D\r\nMessage-ID: <m@x>\r\n\r\nHi!\r\n",
        )

    def test_headers_only(self) -> None:
        """A message of header fields only gets the empty line added after them."""
        self.assertEqual(
            _complete(b"Subject: s\r\n"),
            b"Received: by x\r\nSubject: s\r\nDate: D\r\nMessage-ID: <m@x>\r\n\r\n",
        )

    def test_empty_message(self) -> None:
        """An empty DATA still becomes a well-formed message."""
        self.assertEqual(_complete(b""), b"Received: by x\r\nDate: D\r\nMessage-ID: <m@x>\r\n\r\n")

    def test_date_format(self) -> None:
        """Dates are RFC 5322 in UTC."""
        self.assertEqual(format_date(0), "Thu, 01 Jan 1970 00:00:00 +0000")

    def test_date_kept_for_one_second_only(self) -> None:
        """The kept text of the last second never leaks into the next one."""
        when = 1_763_700_000
        self.assertEqual(format_date(when + 0.1), "Fri, 21 Nov 2025 04:40:00 +0000")
        self.assertEqual(format_date(when + 0.9), "Fri, 21 Nov 2025 04:40:00 +0000")
        self.assertEqual(format_date(when + 1), "Fri, 21 Nov 2025 04:40:01 +0000")
        self.assertEqual(format_date(when - 86_400), "Thu, 20 Nov 2025 04:40:00 +0000")
