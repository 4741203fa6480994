"""Dual DKIM signing: what is signed, how it is written, and that dkimpy verifies it."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from dkim.crypto import RSASSA_PKCS1_v1_5_sign, parse_pem_private_key
from dkim.util import parse_tag_value
from twisted.trial.unittest import SynchronousTestCase

from rail.dkim.sign import from_domain, sign, signed_header_names
from tests.dkim.helpers import KEYS, MESSAGE, NOW, dns_table, records_of, verify_each

_TABLE = dns_table("example.com", records_of(KEYS))
_BOTH = [("rsa-sha256", True), ("ed25519-sha256", True)]
_NEITHER = [("rsa-sha256", False), ("ed25519-sha256", False)]


def _signed(message: bytes = MESSAGE) -> bytes:
    return sign(message, KEYS, NOW) + message


def _fields(signature: bytes) -> list[dict[bytes, bytes]]:
    """The tags of each DKIM-Signature field in ``signature`` (unfolded, FWS removed)."""
    parts = signature.split(b"DKIM-Signature:")[1:]
    return [
        {k: b"".join(v.split()) for k, v in parse_tag_value(part.replace(b"\r\n", b"")).items()}
        for part in parts
    ]


class SignatureTests(SynchronousTestCase):
    def test_both_verify(self) -> None:
        """An rsa-sha256 and an ed25519-sha256 signature, in that order, both verify."""
        self.assertEqual(verify_each(_signed(), _TABLE), _BOTH)

    def test_tags(self) -> None:
        """Each signature names the domain, its selector, relaxed/relaxed and t=now."""
        rsa, ed = _fields(sign(MESSAGE, KEYS, NOW))
        for fields, algorithm, selector in (
            (rsa, b"rsa-sha256", b"r20261121r"),
            (ed, b"ed25519-sha256", b"r20261121e"),
        ):
            self.assertEqual(fields[b"v"], b"1")
            self.assertEqual(fields[b"a"], algorithm)
            self.assertEqual(fields[b"c"], b"relaxed/relaxed")
            self.assertEqual(fields[b"d"], b"example.com")
            self.assertEqual(fields[b"s"], selector)
            self.assertEqual(fields[b"t"], b"1795237702")
        self.assertEqual(rsa[b"bh"], ed[b"bh"])

    def test_header_list(self) -> None:
        """From is over-signed; the listed fields present are signed; Received, X-Mailer and
        absent fields (Cc, Reply-To, Content-Transfer-Encoding) are not."""
        for fields in _fields(sign(MESSAGE, KEYS, NOW)):
            self.assertEqual(
                fields[b"h"],
                b"from:from:to:subject:date:message-id:mime-version:content-type",
            )

    def test_header_list_counts_occurrences(self) -> None:
        """A field present twice is listed twice; From once more than it occurs."""
        names = [b"from", b"to", b"to", b"cc", b"received", b"reply-to", b"subject"]
        self.assertEqual(
            signed_header_names(names),
            [b"from", b"from", b"to", b"to", b"cc", b"subject", b"reply-to"],
        )

    def test_all_listed_fields(self) -> None:
        """Every field of the signed set, when present, is signed and verifies."""
        message = (
            b"From: a@example.com\r\nTo: b@example.org\r\nCc: c@example.org\r\n"
            b"Subject: s\r\nDate: Sat, 21 Nov 2026 04:28:20 +0000\r\nMessage-ID: <m@x>\r\n"
            b"Reply-To: r@example.com\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 7bit\r\n\r\nbody\r\n"
        )
        signature = sign(message, KEYS, NOW)
        self.assertEqual(
            _fields(signature)[0][b"h"],
            b"from:from:to:cc:subject:date:message-id:reply-to:mime-version:content-type:"
            b"content-transfer-encoding",
        )
        self.assertEqual(verify_each(signature + message, _TABLE), _BOTH)

    def test_form(self) -> None:
        """Two fields, CRLF line ends only, folded lines start with a space, no line is
        longer than 78 characters."""
        signature = sign(MESSAGE, KEYS, NOW)
        self.assertTrue(signature.endswith(b"\r\n"))
        lines = signature[:-2].split(b"\r\n")
        self.assertNotIn(b"\n", b"".join(lines))
        self.assertNotIn(b"\r", b"".join(lines))
        starts = [line for line in lines if not line.startswith(b" ")]
        self.assertEqual(len(starts), 2)
        self.assertTrue(all(line.startswith(b"DKIM-Signature: v=1;") for line in starts))
        self.assertEqual([line for line in lines if len(line) > 78], [])

    def test_deterministic(self) -> None:
        """The same message, keys and time give the same bytes (both algorithms are
        deterministic), so a retried delivery sends what was sent before."""
        self.assertEqual(sign(MESSAGE, KEYS, NOW), sign(MESSAGE, KEYS, NOW))

    def test_rsa_matches_dkimpy(self) -> None:
        """The OpenSSL RSA signature is bit-identical to dkimpy's pure-Python one over the
        same input (PKCS#1 v1.5 with SHA-256)."""
        data = b"dkim-signature:v=1; a=rsa-sha256; b=\r\nfrom:x@example.com"
        pem = KEYS.rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        theirs = RSASSA_PKCS1_v1_5_sign(hashlib.sha256(data), parse_pem_private_key(pem))
        ours = KEYS.rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        self.assertEqual(ours, bytes(theirs))


class TamperingTests(SynchronousTestCase):
    def test_body_changed(self) -> None:
        """A changed body word fails both signatures."""
        tampered = _signed().replace(b"warehouse", b"Warehouse")
        self.assertEqual(verify_each(tampered, _TABLE), _NEITHER)

    def test_subject_changed(self) -> None:
        """A changed signed header fails both signatures."""
        tampered = _signed().replace(b"has shipped", b"was lost")
        self.assertEqual(verify_each(tampered, _TABLE), _NEITHER)

    def test_from_added_on_top(self) -> None:
        """A second From added above the original fails both (From is over-signed)."""
        signed = _signed()
        tampered = b"From: attacker@evil.example\r\n" + signed
        self.assertEqual(verify_each(tampered, _TABLE), _NEITHER)

    def test_from_added_below(self) -> None:
        """A second From added at the end of the header fails both."""
        signed = _signed()
        tampered = signed.replace(b"\r\n\r\n", b"\r\nFrom: attacker@evil.example\r\n\r\n", 1)
        self.assertEqual(verify_each(tampered, _TABLE), _NEITHER)

    def test_unsigned_field_added(self) -> None:
        """A field outside the signed set (a relay's Received) may be added."""
        added = b"Received: from rail.test by mx.example.org\r\n" + _signed()
        self.assertEqual(verify_each(added, _TABLE), _BOTH)

    def test_wrong_key_published(self) -> None:
        """Signatures do not verify against someone else's keys."""
        other = dns_table("example.com", records_of(KEYS))
        other[b"r20261121e._domainkey.example.com."] = (
            b"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
        )
        self.assertEqual(verify_each(_signed(), other)[1], ("ed25519-sha256", False))


class RelaxedTests(SynchronousTestCase):
    def test_header_case_and_whitespace(self) -> None:
        """Field names in another case, runs of spaces and tabs, and refolding still pass:
        relaxed canonicalization ignores them."""
        signed = _signed()
        changed = signed
        for old, new in (
            (b"Subject: Your order has shipped", b"SUBJECT:   Your order\t has  shipped "),
            (b"To: Some One <someone@example.org>", b"to: Some One\r\n\t<someone@example.org>"),
            (b"From: Example App", b"FROM:Example  App"),
        ):
            changed = changed.replace(old, new)
        self.assertNotEqual(changed, signed)
        self.assertEqual(verify_each(changed, _TABLE), _BOTH)

    def test_body_whitespace(self) -> None:
        """Trailing spaces, widened spaces and extra empty lines at the end of the body
        still pass."""
        signed = _signed()
        changed = signed.replace(b"left our warehouse", b"left  our\twarehouse")
        changed = changed.replace(b"Example\r\n", b"Example   \r\n\r\n\r\n")
        self.assertEqual(verify_each(changed, _TABLE), _BOTH)


class MessageShapeTests(SynchronousTestCase):
    def test_smtputf8_headers(self) -> None:
        """8-bit UTF-8 in the From display name and address, To and Subject signs and
        verifies; the signing domain is the A-label of the From domain."""
        message = (
            "From: Bücher Läden <versand@bücher.example>\r\n"
            "To: Jürgen <jürgen@例え.jp>\r\n"
            "Subject: Ihre Bestellung über 3 Bücher\r\n"
            "\r\n"
            "Grüße\r\n"
        ).encode()
        domain = from_domain(message)
        self.assertEqual(domain, "xn--bcher-kva.example")
        assert domain is not None
        keys = KEYS.__class__(
            domain=domain,
            ed25519_selector=KEYS.ed25519_selector,
            rsa_selector=KEYS.rsa_selector,
            ed25519_key=KEYS.ed25519_key,
            rsa_key=KEYS.rsa_key,
        )
        signed = sign(message, keys, NOW) + message
        self.assertEqual(verify_each(signed, dns_table(domain, records_of(keys))), _BOTH)

    def test_empty_body(self) -> None:
        """A message with an empty body signs and verifies."""
        message = b"From: a@example.com\r\nSubject: nothing\r\n\r\n"
        self.assertEqual(verify_each(sign(message, KEYS, NOW) + message, _TABLE), _BOTH)

    def test_header_only(self) -> None:
        """A message without the empty separator line signs and verifies (no body)."""
        message = b"From: a@example.com\r\nSubject: nothing\r\n"
        self.assertEqual(verify_each(sign(message, KEYS, NOW) + message, _TABLE), _BOTH)

    def test_body_without_final_crlf(self) -> None:
        """A body whose last line has no CRLF verifies as is, and after SMTP adds the CRLF
        in transit."""
        message = b"From: a@example.com\r\nSubject: s\r\n\r\nfirst\r\nlast"
        signature = sign(message, KEYS, NOW)
        self.assertEqual(verify_each(signature + message, _TABLE), _BOTH)
        self.assertEqual(verify_each(signature + message + b"\r\n", _TABLE), _BOTH)

    def test_trailing_space_without_final_crlf(self) -> None:
        """Trailing spaces on a last line without CRLF are ignored like on any other line,
        so the message verifies as receivers get it (with the CRLF SMTP adds)."""
        message = b"From: a@example.com\r\nSubject: s\r\n\r\nlast  "
        signature = sign(message, KEYS, NOW)
        self.assertEqual(verify_each(signature + message + b"\r\n", _TABLE), _BOTH)

    def test_malformed_header(self) -> None:
        """A header line that is not a field is refused rather than signed ambiguously."""
        with self.assertRaises(ValueError):
            sign(b"From: a@example.com\r\nnot a field\r\n\r\nbody\r\n", KEYS, NOW)


class FromDomainTests(SynchronousTestCase):
    def test_plain(self) -> None:
        """The domain of a bare address."""
        self.assertEqual(from_domain(b"From: a@example.com\r\n\r\n"), "example.com")

    def test_display_name_and_case(self) -> None:
        """Display names, encoded words and upper case do not matter; the result is
        lower case."""
        message = b'From: "=?utf-8?q?J=C3=BCrgen?=" <Info@Example.COM>\r\n\r\nx\r\n'
        self.assertEqual(from_domain(message), "example.com")

    def test_folded(self) -> None:
        """A folded From field is read whole."""
        message = b"From: A very long display name\r\n <app@mail.example.com>\r\n\r\n"
        self.assertEqual(from_domain(message), "mail.example.com")

    def test_idn(self) -> None:
        """A UTF-8 domain is returned as its A-label."""
        message = "From: a@Bücher.example\r\n\r\n".encode()
        self.assertEqual(from_domain(message), "xn--bcher-kva.example")

    def test_unusable(self) -> None:
        """No From, two From fields, two addresses, no domain, non-UTF-8 bytes or a
        malformed header: None (sent unsigned)."""
        for message in (
            b"Subject: s\r\n\r\n",
            b"From: a@example.com\r\nFrom: b@example.com\r\n\r\n",
            b"From: a@example.com, b@example.com\r\n\r\n",
            b"From: nobody\r\n\r\n",
            b"From: a@\r\n\r\n",
            b"From: a@\xff\xfe.example\r\n\r\n",
            b"From: a@example.com\r\nbroken line\r\n\r\n",
        ):
            self.assertIsNone(from_domain(message), message)
