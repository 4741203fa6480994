"""Certificates whose names cryptography decodes lazily and cannot decode."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.pki.inspect import parse_certificate
from tests.pki.helpers import build_certificate, der, make_ca


def _patched(name: str, old: bytes, new: bytes) -> bytes:
    certificate, _ = build_certificate(make_ca(), name=name)
    data = der(certificate)
    assert old in data
    return data.replace(old, new, 1)


class MalformedNameTests(SynchronousTestCase):
    def test_invalid_utf8_common_name(self) -> None:
        """A UTF8String CN with invalid UTF-8 is 'not a certificate', not a crash later."""
        data = _patched("abcde", b"\x0c\x05abcde", b"\x0c\x05\xff\xfe\xfd\xfc\xfb")
        self.assertRaises(ValueError, parse_certificate, data)

    def test_bit_string_common_name(self) -> None:
        """A CN encoded as a BIT STRING is refused at parse time."""
        data = _patched("\x00abc", b"\x0c\x04\x00abc", b"\x03\x04\x00abc")
        self.assertRaises(ValueError, parse_certificate, data)
