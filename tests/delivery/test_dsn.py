"""The DSN built for bounced recipients, read back with the stdlib email parser."""

from __future__ import annotations

import email
import email.policy
import quopri
import re
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

import rail.delivery.bounces as bounces
from rail.delivery.dsn import FailedRecipient, build_dsn, should_send_dsn
from rail.delivery.outcome import Reply
from rail.store.model import BouncedRecipient, BounceReport

ORIGINAL = (
    b"From: App <app@rail.test>\r\n"
    b"To: a@x.test, b@y.test\r\n"
    b"Subject: Your invoice\r\n"
    b"Message-ID: <m1@rail.test>\r\n"
    b"\r\n"
    b"The body is never returned.\r\n"
)
ARRIVAL = 1_700_000_000.0
NOW = 1_700_003_600.0
USER_UNKNOWN = FailedRecipient(
    "a@x.test", Reply(550, "5.1.1", "no such user"), "mx.x.test", 1_700_003_000.0
)
NULL_MX = FailedRecipient(
    "b@y.test",
    Reply(556, "5.1.10", "domain y.test accepts no mail (null MX)", remote=False),
    None,
    1_700_000_010.0,
)


def build(**overrides: Any) -> bytes:
    arguments: dict[str, Any] = {
        "reporting_mta": "rail.example",
        "original": ORIGINAL,
        "original_id": "01HQUEUEID",
        "sender": "app@rail.test",
        "failures": [USER_UNKNOWN, NULL_MX],
        "arrival": ARRIVAL,
        "now": NOW,
        "message_id": "01HDSNID",
    }
    arguments.update(overrides)
    return build_dsn(**arguments)


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def status_blocks(message: EmailMessage) -> list[Message]:
    parts = list(message.iter_parts())
    payload = parts[1].get_payload()
    assert isinstance(payload, list)
    return [block for block in payload if isinstance(block, Message)]


class EnvelopeHeaderTests(SynchronousTestCase):
    def test_top_level_fields(self) -> None:
        """From MAILER-DAEMON of the reporting host, to the envelope sender, with a
        Message-ID of the host, a Date of ``now`` and Auto-Submitted: auto-replied."""
        message = parse(build())
        self.assertEqual(message["From"], "Mail Delivery System <MAILER-DAEMON@rail.example>")
        self.assertEqual(message["To"], "app@rail.test")
        self.assertEqual(message["Subject"], "Undelivered Mail Returned to Sender")
        self.assertEqual(message["Message-ID"], "<01HDSNID@rail.example>")
        self.assertEqual(message["Auto-Submitted"], "auto-replied")
        self.assertEqual(message["MIME-Version"], "1.0")
        self.assertEqual(parsedate_to_datetime(message["Date"]).timestamp(), NOW)

    def test_multipart_report(self) -> None:
        """A multipart/report of type delivery-status with the three RFC 3464 parts."""
        message = parse(build())
        self.assertEqual(message.get_content_type(), "multipart/report")
        self.assertEqual(message.get_param("report-type"), "delivery-status")
        self.assertEqual(
            [part.get_content_type() for part in message.iter_parts()],
            ["text/plain", "message/delivery-status", "text/rfc822-headers"],
        )
        self.assertEqual(message.defects, [])


class DeliveryStatusTests(SynchronousTestCase):
    def test_per_message_fields(self) -> None:
        """Reporting-MTA, Rail's queue id and the arrival date come first."""
        first = status_blocks(parse(build()))[0]
        self.assertEqual(first["Reporting-MTA"], "dns; rail.example")
        self.assertEqual(first["X-Rail-Queue-ID"], "01HQUEUEID")
        self.assertEqual(parsedate_to_datetime(first["Arrival-Date"]).timestamp(), ARRIVAL)

    def test_one_dsn_lists_every_failed_recipient(self) -> None:
        """Each failed recipient has its own group: status, remote MTA when known,
        diagnostic (smtp for a remote reply, X-Rail for Rail's own) and last attempt."""
        blocks = status_blocks(parse(build()))
        self.assertEqual(len(blocks), 3)
        remote, local = blocks[1], blocks[2]
        self.assertEqual(remote["Final-Recipient"], "rfc822; a@x.test")
        self.assertEqual(remote["Action"], "failed")
        self.assertEqual(remote["Status"], "5.1.1")
        self.assertEqual(remote["Remote-MTA"], "dns; mx.x.test")
        self.assertEqual(remote["Diagnostic-Code"], "smtp; 550 5.1.1 no such user")
        self.assertEqual(
            parsedate_to_datetime(remote["Last-Attempt-Date"]).timestamp(), 1_700_003_000.0
        )
        self.assertEqual(local["Final-Recipient"], "rfc822; b@y.test")
        self.assertEqual(local["Status"], "5.1.10")
        self.assertIsNone(local["Remote-MTA"])
        self.assertEqual(
            local["Diagnostic-Code"],
            "X-Rail; 556 5.1.10 domain y.test accepts no mail (null MX)",
        )

    def test_status_without_enhanced_code(self) -> None:
        """A reply without an enhanced code gets the generic status of its class."""
        failure = FailedRecipient("a@x.test", Reply(550, None, "go away"), "mx.x.test", NOW)
        block = status_blocks(parse(build(failures=[failure])))[1]
        self.assertEqual(block["Status"], "5.0.0")
        self.assertEqual(block["Diagnostic-Code"], "smtp; 550 go away")

    def test_non_ascii_recipient(self) -> None:
        """A non-ASCII address is typed utf-8 in the 7-bit xtext form of RFC 6533, with
        '+' and '=' escaped too; the human part carries it readable in UTF-8."""
        failure = FailedRecipient("jörg+x=y@bücher.test", Reply(550, "5.1.1", "no"), None, NOW)
        data = build(failures=[failure])
        self.assertTrue(data.isascii())
        message = parse(data)
        block = status_blocks(message)[1]
        self.assertEqual(
            block["Final-Recipient"], "utf-8; j\\x{F6}rg\\x{2B}x\\x{3D}y@b\\x{FC}cher.test"
        )
        human = next(message.iter_parts())
        self.assertEqual(human["Content-Transfer-Encoding"], "quoted-printable")
        self.assertIn("<jörg+x=y@bücher.test>:", human.get_content())


class HumanPartTests(SynchronousTestCase):
    def test_explains_each_recipient(self) -> None:
        """The text names the reporting host, every address and why it failed,
        attributing remote replies to the host that gave them."""
        human = next(parse(build()).iter_parts())
        self.assertEqual(human.get_content_charset(), "us-ascii")
        text = human.get_content()
        self.assertIn("rail.example", text)
        self.assertIn("<a@x.test>:\r\n    host mx.x.test said: 550 5.1.1 no such user\r\n", text)
        self.assertIn("<b@y.test>:\r\n    556 5.1.10 domain y.test accepts no mail", text)


class OriginalHeadersTests(SynchronousTestCase):
    def test_header_section_only(self) -> None:
        """The original's header section is returned as text/rfc822-headers; its body
        is not."""
        data = build()
        part = list(parse(data).iter_parts())[2]
        self.assertEqual(part.get_content(), ORIGINAL.split(b"\r\n\r\n")[0].decode() + "\r\n")
        self.assertNotIn(b"The body is never returned", data)

    def test_eight_bit_headers(self) -> None:
        """8-bit octets in the original's headers make the part message/global-headers
        (RFC 6533), sent 8bit, and the DSN declares 8bit at the top."""
        original = "Subject: Grüße\r\nFrom: app@rail.test\r\n\r\nbody\r\n".encode()
        data = build(original=original)
        self.assertFalse(data.isascii())
        message = parse(data)
        self.assertEqual(message["Content-Transfer-Encoding"], "8bit")
        part = list(message.iter_parts())[2]
        self.assertEqual(part.get_content_type(), "message/global-headers")
        self.assertEqual(part["Content-Transfer-Encoding"], "8bit")
        self.assertIn("Subject: Grüße\r\nFrom: app@rail.test\r\n".encode(), data)

    def test_invalid_utf8_headers_replaced(self) -> None:
        """8-bit octets that are not UTF-8 become U+FFFD, as global headers are UTF-8."""
        data = build(original=b"Subject: caf\xe9\r\n\r\nbody\r\n")
        self.assertIn("Subject: caf\ufffd\r\n".encode(), data)

    def test_boundary_never_in_content(self) -> None:
        """Headers that contain the natural boundary get a different one."""
        original = b"X-Trap: --=_rail-dsn-01HDSNID\r\nSubject: x\r\n\r\nbody\r\n"
        message = parse(build(original=original))
        self.assertEqual(len(list(message.iter_parts())), 3)
        self.assertNotEqual(message.get_boundary(), "=_rail-dsn-01HDSNID")


class WireFormatTests(SynchronousTestCase):
    def assertWellFormed(self, data: bytes) -> None:
        """CRLF only, no line over 998 octets."""
        self.assertIsNone(re.search(rb"\r(?!\n)|(?<!\r)\n", data))
        self.assertTrue(data.endswith(b"\r\n"))
        self.assertLessEqual(max(len(line) for line in data.split(b"\r\n")), 998)

    def test_crlf_and_seven_bit(self) -> None:
        """The DSN of an ASCII message is 7-bit, CRLF-only, lines within limits."""
        data = build()
        self.assertTrue(data.isascii())
        self.assertWellFormed(data)

    def test_lf_original_and_long_lines(self) -> None:
        """An LF-only original, a 2000-octet header line and a huge unbroken
        diagnostic still give CRLF lines of at most 998 octets."""
        original = b"Subject: x\nX-Long: " + b"a" * 2000 + b"\n\nbody\n"
        failure = FailedRecipient("a@x.test", Reply(550, "5.7.1", "z" * 3000), "mx.x.test", NOW)
        data = build(original=original, failures=[failure])
        self.assertWellFormed(data)
        block = status_blocks(parse(data))[1]
        self.assertTrue(block["Diagnostic-Code"].endswith("..."))

    def test_reply_with_line_breaks(self) -> None:
        """CR and LF inside a reply's text cannot start a field of their own."""
        reply = Reply(550, "5.1.1", "no\r\nX-Injected: yes\nsuch user")
        data = build(failures=[FailedRecipient("a@x.test", reply, "mx.x.test", NOW)])
        self.assertWellFormed(data)
        self.assertNotIn(b"\r\nX-Injected", data)
        block = status_blocks(parse(data))[1]
        self.assertEqual(block["Diagnostic-Code"], "smtp; 550 5.1.1 no X-Injected: yes such user")


class NeverBounceABounceTests(SynchronousTestCase):
    def test_should_send_dsn(self) -> None:
        """No DSN for the null reverse-path or a MAILER-DAEMON sender; one otherwise."""
        self.assertFalse(should_send_dsn(""))
        self.assertFalse(should_send_dsn("MAILER-DAEMON@mx.example"))
        self.assertFalse(should_send_dsn("mailer-daemon@mx.example"))
        self.assertTrue(should_send_dsn("app@rail.test"))
        self.assertTrue(should_send_dsn("postmaster@rail.test"))

    def test_build_refuses_null_sender(self) -> None:
        """Building a DSN for the null reverse-path is a programming error."""
        self.assertRaises(ValueError, build, sender="")
        self.assertRaises(ValueError, build, sender="MAILER-DAEMON@x.test")

    def test_build_refuses_bad_input(self) -> None:
        """No failures, or a line break in a value that becomes a header, is refused."""
        self.assertRaises(ValueError, build, failures=[])
        self.assertRaises(ValueError, build, reporting_mta="rail.example\r\nBcc: x@y")
        self.assertRaises(ValueError, build, message_id="")
        self.assertRaises(ValueError, build, sender="app@rail.test\r\nBcc: x@y")


class QuotedPrintableRoundTripTests(SynchronousTestCase):
    def test_quoted_printable_lines(self) -> None:
        """The quoted-printable human part decodes back to the same text."""
        failure = FailedRecipient("ü@x.test", Reply(550, "5.1.1", "no"), None, NOW)
        data = build(failures=[failure])
        human = next(parse(data).iter_parts())
        raw = human.get_payload(decode=False)
        assert isinstance(raw, str)
        self.assertEqual(
            quopri.decodestring(raw.encode("ascii")).decode("utf-8"), human.get_content()
        )


class UnbuildableDSNTests(SynchronousTestCase):
    def test_logged_and_skipped_with_on_reactor(self) -> None:
        """With ``on_reactor``, a DSN whose building raises is reported through it (one
        error line naming the message and the error type, never its content) and none
        is made, so the bounce can still be recorded; without it, the error propagates."""

        def broken(**_: Any) -> bytes:
            raise ValueError("header section beyond repair")

        self.patch(bounces, "build_dsn", broken)
        report = BounceReport(
            "01MSG",
            "app",
            "app@rail.test",
            0.0,
            b"Subject: x\r\n\r\n",
            (BouncedRecipient("a@example.net", "550 5.1.1 no", "mx", 1.0),),
        )
        calls: list[tuple[Any, ...]] = []
        build = bounces.dsn_builder(
            "rail.test", lambda: 5.0, lambda *a, **kw: calls.append((a, kw))
        )
        self.assertIsNone(build(report))
        [(args, fields)] = calls
        self.assertEqual(fields, {"msg_id": "01MSG", "error": "ValueError"})
        self.assertIn("cannot build the DSN", args[1])
        self.assertRaises(ValueError, bounces.dsn_builder("rail.test", lambda: 5.0), report)
