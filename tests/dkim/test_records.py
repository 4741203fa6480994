"""The TXT records that publish DKIM keys, and their zone-file form."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from twisted.trial.unittest import SynchronousTestCase

from rail.dkim.records import PublishedKey, txt_strings, txt_value, zone_line
from tests.dkim.helpers import KEYS


class ValueTests(SynchronousTestCase):
    def test_ed25519(self) -> None:
        """An ed25519 record carries the raw 32-octet public key (RFC 8463)."""
        value = txt_value(KEYS.ed25519_key.public_key())
        prefix = "v=DKIM1; k=ed25519; p="
        self.assertTrue(value.startswith(prefix))
        raw = KEYS.ed25519_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.assertEqual(base64.b64decode(value[len(prefix) :]), raw)

    def test_rsa(self) -> None:
        """An RSA record carries the DER SubjectPublicKeyInfo."""
        value = txt_value(KEYS.rsa_key.public_key())
        prefix = "v=DKIM1; k=rsa; p="
        self.assertTrue(value.startswith(prefix))
        key = serialization.load_der_public_key(base64.b64decode(value[len(prefix) :]))
        self.assertEqual(key.public_numbers(), KEYS.rsa_key.public_key().public_numbers())


class ZoneTests(SynchronousTestCase):
    def test_strings(self) -> None:
        """Values are cut into strings of at most 255 octets that join back to the value."""
        value = txt_value(KEYS.rsa_key.public_key())
        strings = txt_strings(value)
        self.assertEqual(len(strings), 2)
        self.assertEqual([len(s) for s in strings[:-1]], [255])
        self.assertEqual("".join(strings), value)
        self.assertEqual(txt_strings("short"), ["short"])
        self.assertEqual(txt_strings("x" * 510), ["x" * 255, "x" * 255])

    def test_line(self) -> None:
        """A zone line names the selector under _domainkey, fully qualified, TTL 3600."""
        key = PublishedKey("r20261121e", "ed25519", "v=DKIM1; k=ed25519; p=AAAA")
        self.assertEqual(
            zone_line("example.com", key),
            'r20261121e._domainkey.example.com. 3600 IN TXT "v=DKIM1; k=ed25519; p=AAAA"',
        )

    def test_long_line(self) -> None:
        """A long value is written as several quoted strings."""
        key = PublishedKey("s", "rsa", "a" * 300)
        self.assertEqual(
            zone_line("example.com", key, ttl=60),
            f's._domainkey.example.com. 60 IN TXT "{"a" * 255}" "{"a" * 45}"',
        )
