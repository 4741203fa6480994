"""Tests for rail.pki.keys: key generation, naming and PEM round trips."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from twisted.trial.unittest import SynchronousTestCase

from rail.pki.keys import (
    KEY_TYPES,
    generate_private_key,
    key_type_of,
    load_private_key_pem,
    private_key_pem,
    public_key_der,
)


class GenerateTests(SynchronousTestCase):
    def test_each_key_type(self) -> None:
        """Every offered key type generates a key that key_type_of names the same way."""
        self.assertEqual(KEY_TYPES, ("ed25519", "ecdsa-p256", "rsa2048"))
        for key_type in KEY_TYPES:
            key = generate_private_key(key_type)
            self.assertEqual(key_type_of(key.public_key()), key_type)

    def test_unknown(self) -> None:
        """An unknown key type is a ValueError listing the valid ones."""
        e = self.assertRaises(ValueError, generate_private_key, "rsa1024")
        self.assertEqual(
            str(e), "unknown key type 'rsa1024' (expected one of ed25519, ecdsa-p256, rsa2048)"
        )


class KeyTypeOfTests(SynchronousTestCase):
    def test_foreign_keys(self) -> None:
        """Keys Rail never issues are still named, so /api/who can describe them."""
        self.assertEqual(key_type_of(ed448.Ed448PrivateKey.generate().public_key()), "ed448")
        self.assertEqual(
            key_type_of(ec.generate_private_key(ec.SECP384R1()).public_key()), "ecdsa-p384"
        )
        self.assertEqual(
            key_type_of(ec.generate_private_key(ec.SECP521R1()).public_key()), "ecdsa-p521"
        )
        self.assertEqual(
            key_type_of(ec.generate_private_key(ec.SECP256K1()).public_key()), "ecdsa-secp256k1"
        )
        self.assertEqual(key_type_of(rsa.generate_private_key(65537, 3072).public_key()), "rsa3072")
        self.assertEqual(key_type_of(dsa.generate_private_key(2048).public_key()), "dsa")
        self.assertEqual(key_type_of(object()), "unknown")


class PEMTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """Keys are written as unencrypted PKCS#8 and read back to the same key."""
        for key_type in KEY_TYPES:
            key = generate_private_key(key_type)
            data = private_key_pem(key)
            self.assertTrue(data.startswith(b"-----BEGIN PRIVATE KEY-----\n"), key_type)
            loaded = load_private_key_pem(data)
            self.assertEqual(public_key_der(loaded.public_key()), public_key_der(key.public_key()))

    def test_traditional_format(self) -> None:
        """Keys in the traditional OpenSSL format (BEGIN EC PRIVATE KEY) are also read."""
        key = ec.generate_private_key(ec.SECP256R1())
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        self.assertEqual(key_type_of(load_private_key_pem(data).public_key()), "ecdsa-p256")

    def test_garbage(self) -> None:
        """Anything that is not a PEM private key is a ValueError with a plain message."""
        for data in [
            b"",
            b"hello",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ]:
            e = self.assertRaises(ValueError, load_private_key_pem, data)
            self.assertEqual(str(e), "not a PEM private key")

    def test_encrypted(self) -> None:
        """A passphrase-protected key is refused with a message saying so."""
        key = ed25519.Ed25519PrivateKey.generate()
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
        e = self.assertRaises(ValueError, load_private_key_pem, data)
        self.assertEqual(
            str(e), "encrypted private keys are not supported (store it without a passphrase)"
        )

    def test_unsupported_type(self) -> None:
        """A valid key of a type Rail cannot use (ed448) is refused by name."""
        data = private_key_pem(ed448.Ed448PrivateKey.generate())  # type: ignore[arg-type]
        e = self.assertRaises(ValueError, load_private_key_pem, data)
        self.assertEqual(str(e), "unsupported private key type 'ed448'")
