"""Reading DSNs (RFC 3464) and ARF reports (RFC 5965): facts out, garbage never raises."""

from __future__ import annotations

import base64
import random
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.bounces.reports import (
    MAX_RECIPIENTS,
    DeliveryReport,
    FeedbackReport,
    RecipientReport,
    Unreadable,
    parse_report,
)
from rail.delivery.dsn import FailedRecipient, build_dsn
from rail.delivery.outcome import Reply

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> bytes:
    """A fixture with CRLF line ends, as it arrives over SMTP."""
    return (FIXTURES / name).read_bytes().replace(b"\n", b"\r\n")


def _dsn(status_part: bytes, report_type: bytes = b"delivery-status") -> bytes:
    return (
        b"From: MAILER-DAEMON@mx.example\r\n"
        b"Content-Type: multipart/report; report-type=" + report_type + b"; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain\r\n\r\nsorry\r\n"
        b"--XX\r\nContent-Type: message/delivery-status\r\n\r\n" + status_part + b"\r\n--XX--\r\n"
    )


class DSNTests(SynchronousTestCase):
    def test_postfix_dsn(self) -> None:
        """Postfix's bounce: per-recipient blocks with Final-Recipient, Action, Status,
        Diagnostic-Code (type removed) and Remote-MTA; the delayed one is kept as such."""
        report = parse_report(fixture("postfix-dsn.eml"))
        self.assertEqual(
            report,
            DeliveryReport(
                "mx.dest.test",
                (
                    RecipientReport(
                        "gone@dest.test", "gone@dest.test", "failed", "5.1.1",
                        'unknown user: "gone"', None,
                    ),
                    RecipientReport(
                        "slow@dest.test", None, "delayed", "4.4.1",
                        "451 4.4.1 try again later", "mx2.dest.test",
                    ),
                ),
            ),
        )  # fmt: skip

    def test_bare_lf_and_crlf_read_alike(self) -> None:
        """Line ends do not matter to the reader."""
        raw = (FIXTURES / "postfix-dsn.eml").read_bytes()
        self.assertEqual(parse_report(raw), parse_report(raw.replace(b"\n", b"\r\n")))

    def test_rails_own_dsn(self) -> None:
        """The DSN Rail itself writes (rail.delivery.dsn) reads back, UTF-8 address
        included."""
        data = build_dsn(
            reporting_mta="mx.rail.test",
            original=b"From: a@rail.test\r\nSubject: x\r\n\r\nbody\r\n",
            original_id="01ORIGINAL",
            sender="a@rail.test",
            failures=[
                FailedRecipient(
                    "bob@dest.test", Reply(550, "5.1.1", "no such user"), "mx.dest.test", 1.0
                ),
                FailedRecipient(
                    "x@dest.test", Reply(554, "5.4.7", "expired", remote=False), None, 2.0
                ),
            ],
            arrival=0.0,
            now=3.0,
            message_id="01DSN",
        )
        report = parse_report(data)
        assert isinstance(report, DeliveryReport)
        self.assertEqual(report.reporting_mta, "mx.rail.test")
        self.assertEqual(
            [
                (r.final_recipient, r.action, r.status, r.diagnostic, r.remote_mta)
                for r in report.recipients
            ],
            [
                ("bob@dest.test", "failed", "5.1.1", "550 5.1.1 no such user", "mx.dest.test"),
                ("x@dest.test", "failed", "5.4.7", "554 5.4.7 expired", None),
            ],
        )

    def test_encoded_and_wrapped(self) -> None:
        """A base64 delivery-status part, and a report wrapped in multipart/mixed by a
        forwarding mailbox, are read."""
        block = (
            b"Reporting-MTA: dns; a.example\r\n\r\nFinal-Recipient: rfc822; <x@y.example>\r\n"
            b"Action: failed\r\nStatus: 5.2.1\r\n"
        )
        encoded = (
            b'Content-Type: multipart/report; report-type="delivery-status";\r\n'
            b' boundary="b 1"\r\n\r\n'
            b"--b 1\r\nContent-Type: message/delivery-status\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(block).replace(b"\n", b"\r\n")
            + b"--b 1--\r\n"
        )
        report = parse_report(encoded)
        assert isinstance(report, DeliveryReport)
        self.assertEqual(report.recipients[0].final_recipient, "x@y.example")
        self.assertEqual(report.recipients[0].status, "5.2.1")
        wrapped = (
            b"Content-Type: multipart/mixed; boundary=OUT\r\n"
            b"\r\n--OUT\r\nContent-Type: text/plain\r\n\r\nfwd\r\n"
            b"--OUT\r\n" + encoded + b"\r\n--OUT--\r\n"
        )
        self.assertEqual(parse_report(wrapped), report)

    def test_not_reports(self) -> None:
        """Plain mail, another report type, a report without its machine part or without
        any recipient block: Unreadable, each with a reason."""
        cases = [
            b"Subject: out of office\r\n\r\nI am away.\r\n",
            _dsn(
                b"Reporting-MTA: dns; a\r\n\r\nFinal-Recipient: rfc822; a@b\r\nAction: failed\r\n",
                b"disposition-notification",
            ),
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=Z\r\n"
            b"\r\n--Z\r\nContent-Type: text/plain\r\n\r\nx\r\n--Z--\r\n",
            _dsn(b"Reporting-MTA: dns; a\r\n"),
            b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nno boundary\r\n",
        ]
        for data in cases:
            self.assertIsInstance(parse_report(data), Unreadable, data)

    def test_recipient_blocks_are_bounded(self) -> None:
        """At most MAX_RECIPIENTS blocks are read; long values are cut."""
        blocks = b"".join(
            b"\r\nFinal-Recipient: rfc822; r%d@x.example\r\nAction: failed\r\n"
            b"Status: 5.1.1\r\nDiagnostic-Code: smtp; %s\r\n" % (i, b"y" * 2000)
            for i in range(MAX_RECIPIENTS + 10)
        )
        report = parse_report(_dsn(b"Reporting-MTA: dns; a\r\n" + blocks))
        assert isinstance(report, DeliveryReport)
        self.assertEqual(len(report.recipients), MAX_RECIPIENTS)
        self.assertLessEqual(len(report.recipients[0].diagnostic or ""), 1000)

    def test_garbage_never_raises(self) -> None:
        """Random bytes, truncations and mutations of real reports come back as values."""
        rnd = random.Random(1605)
        samples = [fixture("postfix-dsn.eml"), fixture("arf-abuse.eml")]
        for _ in range(300):
            base = rnd.choice(samples)
            cut = base[: rnd.randrange(len(base))]
            mutated = bytearray(base)
            for _ in range(20):
                mutated[rnd.randrange(len(mutated))] = rnd.randrange(256)
            for data in (cut, bytes(mutated), rnd.randbytes(rnd.randrange(2000))):
                self.assertIsInstance(
                    parse_report(data), (DeliveryReport, FeedbackReport, Unreadable)
                )


class ARFTests(SynchronousTestCase):
    def test_rfc5965_abuse_report(self) -> None:
        """The RFC 5965 §B.2-style sample: the feedback fields and, from the returned
        message, its Message-ID and the VERP'd Return-Path."""
        report = parse_report(fixture("arf-abuse.eml"))
        verp = "b-01JEXAMPLE0000000000000000-0123456789abcdef@bounces.rail.test"
        self.assertEqual(
            report,
            FeedbackReport(
                feedback_type="abuse",
                user_agent="SomeGenerator/1.0",
                version="1",
                recipients=("carol@mailbox.example",),
                arrival_date="Thu, 8 Mar 2005 14:00:00 EDT",
                reporting_mta="mail.mailbox.example",
                reported_domain="rail.test",
                source_ip="127.0.0.1",
                original_mail_from=verp,
                original_message_id="<01JEXAMPLE0000000000000000@rail.test>",
                original_return_path=verp,
            ),
        )

    def test_redacted_and_headers_only(self) -> None:
        """A report without Original-Rcpt-To (redacted) and with text/rfc822-headers
        has no recipients; one without Feedback-Type is unreadable."""
        data = fixture("arf-abuse.eml").replace(
            b"Original-Rcpt-To: <carol@mailbox.example>\r\n", b""
        )
        data = data.replace(b"Content-Type: message/rfc822", b"Content-Type: text/rfc822-headers")
        report = parse_report(data)
        assert isinstance(report, FeedbackReport)
        self.assertEqual(report.recipients, ())
        self.assertEqual(report.original_message_id, "<01JEXAMPLE0000000000000000@rail.test>")
        self.assertIsInstance(
            parse_report(data.replace(b"Feedback-Type: abuse\r\n", b"")), Unreadable
        )
