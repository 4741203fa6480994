"""dkimpy's RSA signing through OpenSSL gives dkimpy's own bytes."""

from __future__ import annotations

import hashlib

import dkim
import dkim.crypto
from twisted.trial.unittest import SynchronousTestCase

from rail.forward import fastrsa
from tests.forward.helpers import other_rsa_key


class FastRSATests(SynchronousTestCase):
    def test_same_signature_as_dkimpy(self) -> None:
        """For an RSA PEM key and a SHA-256 digest, the installed functions produce
        exactly dkimpy's pure-Python signature; a plain key dict still goes to dkimpy."""
        fastrsa.install()
        pem, _ = other_rsa_key()
        digest = hashlib.sha256(b"canonical header data")
        fast = dkim.RSASSA_PKCS1_v1_5_sign(digest, dkim.parse_pem_private_key(pem))
        slow = dkim.crypto.RSASSA_PKCS1_v1_5_sign(digest, dkim.crypto.parse_pem_private_key(pem))
        self.assertEqual(fast, slow)
        plain = dkim.crypto.parse_pem_private_key(pem)
        self.assertEqual(dkim.RSASSA_PKCS1_v1_5_sign(digest, plain), slow)

    def test_arc_sign_verifies(self) -> None:
        """A whole ARC set signed with the installed functions verifies with dkimpy."""
        fastrsa.install()
        pem, txt = other_rsa_key()
        message = b"From: <a@x.example>\r\nSubject: hi\r\n\r\nbody\r\n"
        results = b"Authentication-Results: mx.x.example; spf=pass smtp.mailfrom=x.example\r\n"
        sealed = b"".join(
            dkim.arc_sign(results + message, b"s", b"x.example", pem, b"mx.x.example")
        )
        cv, _, reason = dkim.arc_verify(
            sealed + message, dnsfunc=lambda name, timeout=5: txt.encode()
        )
        self.assertEqual(cv, dkim.CV_Pass, reason)
