"""Inbound policy: SPF/DMARC verdicts, bounce permission, Received and Subject."""

from __future__ import annotations

from email import policy as email_policy
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rail.config.schema import Inbound
from rail.inbound.model import Authentication
from rail.inbound.policy import (
    DMARC_REJECTED,
    SPF_FAILED,
    authentication_verdict,
    bounce_allowed,
    decode_subject,
    received_field,
)


def auth(**changes: Any) -> Authentication:
    values: dict[str, Any] = {
        "spf": "pass",
        "spf_scope": "mailfrom",
        "spf_domain": "sender.example",
        "dkim": (),
        "dmarc": "pass",
        "from_domain": "sender.example",
        "dmarc_policy": None,
    }
    values.update(changes)
    return Authentication(**values)


class VerdictTests(SynchronousTestCase):
    def test_table(self) -> None:
        """Every combination of results and settings gives the documented verdict."""
        reject = Inbound(spf_fail="reject", dmarc="enforce")
        tag = Inbound(spf_fail="tag", dmarc="tag")
        cases = [
            (auth(), reject, None),
            (auth(spf="fail"), reject, SPF_FAILED),
            (auth(spf="fail"), tag, None),
            (auth(spf="softfail"), reject, None),
            (auth(spf="temperror"), reject, None),
            (auth(spf="permerror"), reject, None),
            (auth(dmarc="fail", dmarc_policy="reject"), reject, DMARC_REJECTED),
            (auth(dmarc="fail", dmarc_policy="reject"), tag, None),
            (auth(dmarc="fail", dmarc_policy="quarantine"), reject, None),
            (auth(dmarc="fail", dmarc_policy="none"), reject, None),
            (auth(dmarc="pass", dmarc_policy="reject"), reject, None),
            (auth(dmarc="temperror", dmarc_policy="reject"), reject, None),
            (auth(spf="fail", dmarc="fail", dmarc_policy="reject"), reject, SPF_FAILED),
            (
                auth(spf="fail", dmarc="fail", dmarc_policy="reject"),
                Inbound(spf_fail="tag", dmarc="enforce"),
                DMARC_REJECTED,
            ),
        ]
        for index, (result, settings, expected) in enumerate(cases):
            with self.subTest(case=index):
                self.assertEqual(authentication_verdict(result, settings), expected)

    def test_reply_texts(self) -> None:
        """The refusals carry the enhanced codes the spec names."""
        self.assertEqual(SPF_FAILED.smtp_line(), b"550 5.7.23 SPF validation failed")
        self.assertEqual(DMARC_REJECTED.smtp_line(), b"550 5.7.1 Rejected by DMARC policy")

    def test_bounce_allowed(self) -> None:
        """No DSN to the null sender, nor after SPF or DMARC fail."""
        self.assertTrue(bounce_allowed("a@b.example", auth()))
        self.assertTrue(bounce_allowed("a@b.example", auth(spf="softfail", dmarc="none")))
        self.assertFalse(bounce_allowed("", auth()))
        self.assertFalse(bounce_allowed("a@b.example", auth(spf="fail")))
        self.assertFalse(bounce_allowed("a@b.example", auth(dmarc="fail")))


class ReceivedTests(SynchronousTestCase):
    def received(self, **changes: Any) -> str:
        values: dict[str, Any] = {
            "helo": "mail.sender.example",
            "peer": "192.0.2.7",
            "hostname": "mx.rail.test",
            "message_id": "01JQ0000000000000000000000",
            "date": "Sat, 28 Mar 2026 12:00:00 +0000",
            "tls": False,
            "smtputf8": False,
            "recipients": ("a@rail.test",),
        }
        values.update(changes)
        return received_field(**values)

    def test_one_recipient(self) -> None:
        """RFC 5321 §4.4 shape: from, TCP-info literal, by, with, id, for, date."""
        self.assertEqual(
            self.received(),
            "Received: from mail.sender.example ([192.0.2.7])\r\n"
            "\tby mx.rail.test (Rail) with ESMTP id 01JQ0000000000000000000000\r\n"
            "\tfor <a@rail.test>;\r\n"
            "\tSat, 28 Mar 2026 12:00:00 +0000",
        )

    def test_several_recipients_tls_ipv6(self) -> None:
        """No ``for`` with several recipients; ESMTPS with TLS (and its details as a
        comment); IPv6 peers are tagged."""
        self.assertEqual(
            self.received(
                peer="2001:db8::1",
                tls=True,
                recipients=("a@rail.test", "b@rail.test"),
                tls_info="using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384",
            ),
            "Received: from mail.sender.example ([IPv6:2001:db8::1])\r\n"
            "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n"
            "\tby mx.rail.test (Rail) with ESMTPS id 01JQ0000000000000000000000;\r\n"
            "\tSat, 28 Mar 2026 12:00:00 +0000",
        )

    def test_protocols(self) -> None:
        """``with`` follows RFC 3848 and RFC 6531."""
        for tls, utf8, name in [
            (False, False, "ESMTP"),
            (True, False, "ESMTPS"),
            (False, True, "UTF8SMTP"),
            (True, True, "UTF8SMTPS"),
        ]:
            with self.subTest(name=name):
                self.assertIn(f" with {name} id ", self.received(tls=tls, smtputf8=utf8))


class SubjectTests(SynchronousTestCase):
    def test_decoding(self) -> None:
        """Encoded-words are decoded; bad ones never raise; whitespace is collapsed."""
        cases = [
            (None, ""),
            ("", ""),
            ("Hello", "Hello"),
            ("=?utf-8?q?caf=C3=A9?= time", "café time"),
            ("=?ISO-8859-1?B?SGFsbPY=?=", "Hallö"),
            ("folded\t line", "folded line"),
            ("=?utf-8?b?!!!?= x", "x"),
            ("=?nonsense?q?abc?=", "abc"),
            ("raw UTF-8 ünïcode", "raw UTF-8 ünïcode"),
        ]
        for raw, expected in cases:
            with self.subTest(raw=raw):
                self.assertEqual(decode_subject(raw), expected)

    def test_plain_ascii_read_as_the_stdlib_reads_it(self) -> None:
        """An ASCII Subject without encoded-words (decoded without the email package)
        reads exactly as the stdlib's header parser reads it."""
        for raw in [
            'a (comment) "quoted" back\\slash',
            "x=y? z ?= =",
            "tab\there\x01\x1f ctl\x7f",
            "  leading and trailing  ",
            "Re: [list] <tag> a@b.example;",
        ]:
            with self.subTest(raw=raw):
                stdlib = " ".join(str(email_policy.default.header_factory("subject", raw)).split())
                self.assertEqual(decode_subject(raw), stdlib)
