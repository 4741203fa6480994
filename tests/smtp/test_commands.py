"""MAIL/RCPT/HELO argument parsing as plain values."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.policy.verdict import Reject
from rail.smtp.commands import MailCommand, RcptCommand, parse_helo, parse_mail, parse_rcpt


def _mail(arg: bytes) -> MailCommand | Reject:
    return parse_mail(arg, esmtp=True, max_size=1000)


class MailTests(SynchronousTestCase):
    def test_forms(self) -> None:
        """Null path, plain path, a tolerated space after the colon, source routes."""
        self.assertEqual(_mail(b"FROM:<>"), MailCommand(sender=""))
        self.assertEqual(_mail(b"from:<a@b.example>"), MailCommand(sender="a@b.example"))
        self.assertEqual(_mail(b"FROM: <a@b.example>"), MailCommand(sender="a@b.example"))
        self.assertEqual(_mail(b"FROM:<@r.example:a@b.example>"), MailCommand("a@b.example"))
        self.assertEqual(_mail(b'FROM:<"a b"@b.example>'), MailCommand('"a b"@b.example'))
        self.assertEqual(_mail(b"FROM:<a@[127.0.0.1]>"), MailCommand("a@[127.0.0.1]"))

    def test_parameters(self) -> None:
        """SIZE, BODY and SMTPUTF8 are read; names are case-insensitive."""
        self.assertEqual(
            _mail(b"FROM:<a@b.example> size=10 body=8bitmime SMTPUTF8"),
            MailCommand("a@b.example", size=10, eight_bit=True, smtputf8=True),
        )

    def test_refusals(self) -> None:
        """Each malformed argument gets its own code."""
        cases = {
            b"FROM:a@b.example": "5.5.4",
            b"FROM:<a@b.example>x": "5.5.4",
            b"FROM:<a@b.example> SIZE=1001": "5.3.4",
            b"FROM:<a@b.example> SIZE=1 SIZE=2": "5.5.4",
            b"FROM:<a@b.example> RET=FULL": "5.5.4",
            b"FROM:<a.@b.example>": "5.1.7",
            b"FROM:<a@-b.example>": "5.1.7",
            b"FROM:<a@b.example.>": "5.1.7",
            "FROM:<ü@b.example>".encode(): "5.6.7",
            b"FROM:<" + b"a" * 65 + b"@b.example>": "5.1.7",
        }
        for arg, enhanced in cases.items():
            result = _mail(arg)
            assert isinstance(result, Reject), arg
            self.assertEqual(result.enhanced, enhanced, arg)

    def test_utf8_with_smtputf8(self) -> None:
        """Internationalized addresses are accepted with SMTPUTF8 and kept as text."""
        result = _mail("FROM:<ü@bücher.example> SMTPUTF8".encode())
        self.assertEqual(result, MailCommand("ü@bücher.example", smtputf8=True))


class RcptTests(SynchronousTestCase):
    def test_postmaster(self) -> None:
        """``<postmaster>`` alone means this host's postmaster."""
        self.assertEqual(
            parse_rcpt(b"TO:<Postmaster>", smtputf8=False, hostname="mx.rail.test"),
            RcptCommand("postmaster@mx.rail.test"),
        )

    def test_no_parameters(self) -> None:
        """RCPT parameters (DSN's NOTIFY, ORCPT) are not supported: 555 5.5.4."""
        result = parse_rcpt(b"TO:<a@b.example> NOTIFY=NEVER", smtputf8=False, hostname="h")
        self.assertEqual(result, Reject(555, "5.5.4", "Unsupported MAIL or RCPT parameter"))

    def test_null_path_refused(self) -> None:
        """RCPT TO:<> is not an address."""
        self.assertIsInstance(parse_rcpt(b"TO:<>", smtputf8=False, hostname="h"), Reject)


class HeloTests(SynchronousTestCase):
    def test_names(self) -> None:
        """Host names, dotless names and literals pass; others are refused."""
        self.assertEqual(parse_helo(b"mail.example"), "mail.example")
        self.assertEqual(parse_helo(b"[IPv6:2001:db8::1]"), "[IPv6:2001:db8::1]")
        for bad in (b"", b"a b", b"[300.1.1.1]", b"-x.example", b"x\xff"):
            self.assertIsInstance(parse_helo(bad), Reject, bad)
