"""The Authentication-Results field Rail writes, and the removal of forged ones."""

from __future__ import annotations

import attrs
import authres
import authres.arc
import authres.dmarc
from twisted.trial.unittest import SynchronousTestCase

from rail.inbound.model import Authentication, DKIMResult
from rail.inbound.results import authentication_results, remove_own_results

AUTHSERV = "mx.rail.test"
_FEATURES = authres.FeatureContext(authres.dmarc, authres.arc)

FULL = Authentication(
    spf="pass",
    spf_scope="mailfrom",
    spf_domain="bounce.example.test",
    dkim=(
        DKIMResult("pass", "example.test", "r20261121r", "rsa-sha256", "AbCdEfGhIjKl"),
        DKIMResult(
            "fail", "example.test", "r20261121e", "ed25519-sha256", "ZyXwVuTs", 'body "hash"\n'
        ),
    ),
    dmarc="pass",
    from_domain="example.test",
    dmarc_policy="reject",
    spf_reason="sender SPF authorized",
    dmarc_reason="SPF aligned",
)


def parsed(field: str) -> authres.AuthenticationResultsHeader:
    return _FEATURES.parse(field.replace("\r\n", ""))


class HeaderTests(SynchronousTestCase):
    def test_parses_back(self) -> None:
        """The field parses with authres: Rail's authserv-id, one clause per check and
        per signature, with the identities each checked."""
        header = parsed(authentication_results(AUTHSERV, FULL))
        self.assertEqual(header.authserv_id, AUTHSERV)
        self.assertEqual(
            [(r.method, r.result) for r in header.results],
            [
                ("spf", "pass"),
                ("dkim", "pass"),
                ("dkim", "fail"),
                ("dmarc", "pass"),
                ("arc", "none"),
            ],
        )
        spf, rsa, ed, dmarc, _arc = header.results
        self.assertEqual(spf.smtp_mailfrom, "bounce.example.test")
        props = {(p.type, p.name): p.value for p in rsa.properties}
        self.assertEqual(
            props,
            {
                ("header", "d"): "example.test",
                ("header", "s"): "r20261121r",
                ("header", "a"): "rsa-sha256",
                ("header", "b"): "AbCdEfGhIjKl",
            },
        )
        self.assertEqual(ed.reason, "body 'hash'?")
        self.assertEqual(dmarc.header_from, "example.test")

    def test_folded(self) -> None:
        """Lines stay within 78 characters, continue with whitespace, and the field has
        no final CRLF."""
        field = authentication_results(AUTHSERV, FULL)
        self.assertTrue(field.startswith("Authentication-Results: mx.rail.test;\r\n\t"))
        self.assertFalse(field.endswith("\r\n"))
        for line in field.split("\r\n"):
            self.assertLessEqual(len(line.expandtabs(8)), 78, line)
        for line in field.split("\r\n")[1:]:
            self.assertIn(line[:1], (" ", "\t"))

    def test_none_and_helo(self) -> None:
        """Without signatures: dkim=none; a null sender's SPF names smtp.helo; no From
        domain: no header.from."""
        auth = Authentication(
            spf="none",
            spf_scope="helo",
            spf_domain="client.example",
            dkim=(),
            dmarc="permerror",
            from_domain=None,
            dmarc_reason="several From fields",
        )
        header = parsed(authentication_results(AUTHSERV, auth))
        self.assertEqual(
            [(r.method, r.result) for r in header.results],
            [("spf", "none"), ("dkim", "none"), ("dmarc", "permerror"), ("arc", "none")],
        )
        self.assertEqual(header.results[0].smtp_helo, "client.example")
        self.assertIsNone(header.results[2].header_from)


BODY = b"Authentication-Results: mx.rail.test; spf=pass\r\nbody stays\r\n"


class RemovalTests(SynchronousTestCase):
    def test_removes_own_keeps_others(self) -> None:
        """Fields claiming Rail's authserv-id (any case, folded, quoted, after a comment)
        go; other servers' fields, other fields and the body stay byte for byte."""
        data = (
            b"Received: from x by y\r\n"
            b"Authentication-Results: MX.Rail.Test; spf=pass\r\n"
            b"Authentication-Results: other.example; dkim=pass\r\n"
            b"authentication-results:\r\n"
            b"\tmx.rail.test;\r\n"
            b"  dkim=pass header.d=evil.test\r\n"
            b'Authentication-Results: (forged) "mx.rail.test" 1; none\r\n'
            b"Authentication-Results: mx.rail.test.evil; none\r\n"
            b"Subject: hi\r\n"
            b"\r\n" + BODY
        )
        self.assertEqual(
            remove_own_results(data, "mx.rail.test"),
            b"Received: from x by y\r\n"
            b"Authentication-Results: other.example; dkim=pass\r\n"
            b"Authentication-Results: mx.rail.test.evil; none\r\n"
            b"Subject: hi\r\n"
            b"\r\n" + BODY,
        )

    def test_untouched_without_own(self) -> None:
        """A message with none of Rail's fields comes back identical, and is not copied
        (it may be a 25 MB message: see bench/memory.py)."""
        data = b"From: a@b.test\r\nAuthentication-Results: x.test; none\r\n\r\n" + BODY
        self.assertIs(remove_own_results(data, AUTHSERV), data)

    def test_header_only_message(self) -> None:
        """A message without a body loses its field too."""
        data = b"Subject: x\r\nAuthentication-Results: mx.rail.test; none\r\n"
        self.assertEqual(remove_own_results(data, AUTHSERV), b"Subject: x\r\n")

    def test_own_field_round_trip(self) -> None:
        """Rail's own folded field, put in front of a message, is removed whole."""
        data = b"Subject: x\r\n\r\nbody\r\n"
        stamped = authentication_results(AUTHSERV, FULL).encode() + b"\r\n" + data
        self.assertEqual(remove_own_results(stamped, AUTHSERV.upper()), data)


class ARCClauseTests(SynchronousTestCase):
    def test_arc_result_and_instance(self) -> None:
        """``arc=`` carries the chain's validation, with the highest instance as a
        comment; it is what dkimpy's ARC signing reads ``cv=`` from."""
        field = authentication_results(AUTHSERV, attrs.evolve(FULL, arc="pass", arc_instance=2))
        arc = parsed(field).results[-1]
        self.assertEqual((arc.method, arc.result), ("arc", "pass"))
        self.assertIn("arc=pass (i=2)", field)
