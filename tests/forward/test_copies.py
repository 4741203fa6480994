"""Forwarded copies: byte-identical but for the trace and ARC fields, sealed so dkimpy's
ARC verifier passes, for fresh mail (i=1) and for mail that arrives with a chain (i=2)."""

from __future__ import annotations

from pathlib import Path

import attrs
import dkim
from cryptography.hazmat.primitives import serialization
from twisted.trial.unittest import SynchronousTestCase

from rail.forward.copies import ForwardRequest, Received, SealKey, arc_set, forwarded_copy
from rail.inbound.model import Authentication
from rail.inbound.results import authentication_results
from tests.forward.helpers import dns_for, key_store, other_rsa_key

NOW = 1_790_000_000.0
AUTHSERV = "mx.rail.test"
ORIGINAL = (
    b"From: Alice <alice@sender.example>\r\n"
    b"To: alias@rail.test\r\n"
    b"Subject: hello\r\n"
    b"Message-ID: <1@sender.example>\r\n"
    b"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
    b"\r\n"
    b"Hello there.\r\n"
)
RECEIVED = (
    b"Received: from mail.sender.example ([192.0.2.7])\r\n"
    b"\tby mx.rail.test (Rail) with ESMTPS id X;\r\n"
    b"\tTue, 01 Dec 2026 10:00:01 +0000\r\n"
)
PASS = Authentication(
    spf="pass",
    spf_scope="mailfrom",
    spf_domain="sender.example",
    dkim=(),
    dmarc="pass",
    from_domain="sender.example",
)


def received(original: bytes, auth: Authentication) -> Received:
    results = (authentication_results(AUTHSERV, auth) + "\r\n").encode("ascii")
    return Received(
        received=RECEIVED, results=results, original=original, sender="alice@sender.example",
        received_at=NOW,
    )  # fmt: skip


class CopyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.keys = key_store(Path(self.mktemp()), ["rail.test"], NOW)
        domain_keys = self.keys.signing_keys("rail.test", NOW)
        assert domain_keys is not None
        pem = domain_keys.rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        self.seal_key = SealKey("rail.test", domain_keys.rsa_selector, pem)

    def copy(self, message: Received) -> bytes:
        request = ForwardRequest("alias@rail.test", ("bob@mailbox.example",), 0)
        seal = arc_set(message, self.seal_key, AUTHSERV)
        made = forwarded_copy("01ID", message, request, "SRS0=x@rail.test", seal)
        self.assertEqual(made.client, "forward:alias@rail.test")
        self.assertEqual(made.recipients, ("bob@mailbox.example",))
        self.assertEqual(made.sender, "SRS0=x@rail.test")
        return made.data

    def test_fresh_mail_sealed_at_instance_one(self) -> None:
        """Fresh mail gets ARC set i=1 with cv=none; dkimpy's verifier says pass; the
        rest is Rail's Received field and the original, byte for byte (Rail's own
        Authentication-Results field is not sent: the AAR carries it)."""
        data = self.copy(received(ORIGINAL, PASS))
        self.assertTrue(data.endswith(RECEIVED + ORIGINAL))
        head = data[: -len(RECEIVED + ORIGINAL)]
        self.assertTrue(head.startswith(b"ARC-Seal: i=1; "))
        self.assertIn(b"cv=none", head)
        self.assertIn(b"ARC-Authentication-Results: i=1; mx.rail.test;", head)
        self.assertIn(b"ARC-Message-Signature: i=1; ", head)
        self.assertNotIn(b"\nAuthentication-Results", data)
        cv, results, _ = dkim.arc_verify(data, dnsfunc=dns_for(self.keys, ["rail.test"]))
        self.assertEqual(cv, dkim.CV_Pass)
        self.assertEqual([r["instance"] for r in results], [1])

    def test_existing_chain_gets_instance_two(self) -> None:
        """Mail arriving with a valid ARC set (which Rail's verification found ``pass``)
        gets set i=2 with cv=pass, and the whole chain verifies."""
        other_pem, other_txt = other_rsa_key()
        first_ar = (
            b"Authentication-Results: mx.first.example; spf=pass smtp.mailfrom=sender.example\r\n"
        )
        first_set = b"".join(
            dkim.arc_sign(
                first_ar + ORIGINAL, b"s1", b"first.example", other_pem, b"mx.first.example",
                timestamp=int(NOW) - 60,
            )
        )  # fmt: skip
        arrived = first_set + ORIGINAL
        extra = {"s1._domainkey.first.example.": other_txt}
        cv, _, _ = dkim.arc_verify(arrived, dnsfunc=dns_for(self.keys, [], extra))
        self.assertEqual(cv, dkim.CV_Pass)  # what Rail's verifier reports as arc=pass
        auth = attrs.evolve(PASS, arc="pass", arc_instance=1)
        data = self.copy(received(arrived, auth))
        self.assertTrue(data.startswith(b"ARC-Seal: i=2; "))
        self.assertIn(b"cv=pass", data.split(b"\r\n\r\n")[0])
        cv, results, reason = dkim.arc_verify(
            data, dnsfunc=dns_for(self.keys, ["rail.test"], extra)
        )
        self.assertEqual(cv, dkim.CV_Pass, reason)
        self.assertEqual(sorted(r["instance"] for r in results), [1, 2])


class EdgeTests(SynchronousTestCase):
    def setUp(self) -> None:
        keys = key_store(Path(self.mktemp()), ["rail.test"], NOW)
        domain_keys = keys.signing_keys("rail.test", NOW)
        assert domain_keys is not None
        pem = domain_keys.rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        self.key = SealKey("rail.test", domain_keys.rsa_selector, pem)

    def test_temperror_sealed_as_fail(self) -> None:
        """A chain Rail could not check (arc=temperror) is sealed cv=fail, the value
        RFC 8617 has for it."""
        seals = b"ARC-Seal: i=1; a=rsa-sha256; cv=none; d=x.example; s=s; b=abc\r\n"
        auth = attrs.evolve(PASS, arc="temperror", arc_instance=1)
        made = arc_set(received(seals + ORIGINAL, auth), self.key, AUTHSERV)
        self.assertTrue(made.startswith(b"ARC-Seal: i=2; cv=fail;"), made[:80])

    def test_too_long_chain_unsealed(self) -> None:
        """Past instance 50 dkimpy refuses to seal: the copy goes unsealed, not lost."""
        seals = b"".join(
            b"ARC-Seal: i=%d; a=rsa-sha256; cv=pass; d=x.example; s=s; b=abc\r\n" % i
            for i in range(1, 51)
        )
        auth = attrs.evolve(PASS, arc="fail", arc_instance=50)
        self.assertEqual(arc_set(received(seals + ORIGINAL, auth), self.key, AUTHSERV), b"")
