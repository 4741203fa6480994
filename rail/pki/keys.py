"""Private keys for Rail's CA, its clients and its self-signed server certificate.

Rail offers three key types: ed25519 (the default: small, fast, no parameters to get wrong),
ECDSA P-256 and RSA-2048 for client stacks that cannot do ed25519. Every other module names
key types with the strings produced here, so that ``rail certs list``, ``/api/who`` and the
registry agree on one vocabulary.
"""

from __future__ import annotations

from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

__all__ = [
    "KEY_TYPES",
    "PrivateKey",
    "generate_private_key",
    "key_type_of",
    "load_private_key_pem",
    "private_key_pem",
    "public_key_der",
]

KEY_TYPES = ("ed25519", "ecdsa-p256", "rsa2048")

PrivateKey: TypeAlias = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_CURVE_NAMES = {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384", "secp521r1": "ecdsa-p521"}


def generate_private_key(key_type: str) -> PrivateKey:
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key type {key_type!r} (expected one of {', '.join(KEY_TYPES)})")


def key_type_of(public_key: object) -> str:
    """Name any public key, including ones Rail would never issue.

    ``/api/who`` accepts certificates from anywhere, so this must describe foreign keys
    (ed448, P-384, DSA...) rather than fail on them.
    """
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "ed448"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return _CURVE_NAMES.get(public_key.curve.name, f"ecdsa-{public_key.curve.name}")
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"rsa{public_key.key_size}"
    if isinstance(public_key, dsa.DSAPublicKey):
        return "dsa"
    return "unknown"


def private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 without a passphrase: the file's 0600 mode is the protection, as for sshd.

    PKCS#8 rather than the traditional per-algorithm formats because it is the one form that
    every client stack (Go, OpenSSL, Java, rustls) reads for all three key types.
    """
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_der(public_key: CertificatePublicKeyTypes) -> bytes:
    """SubjectPublicKeyInfo DER: the one comparison that works across all key types.

    Used to check that a key file belongs to a certificate (key objects have no equality).
    """
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key_pem(data: bytes) -> PrivateKey:
    """Load a key Rail can sign with; the messages are shown to operators after a file name."""
    if b"ENCRYPTED" in data:
        raise ValueError("encrypted private keys are not supported (store it without a passphrase)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as e:
        # cryptography raises TypeError for a passphrase-protected key without "ENCRYPTED"
        # in its label (e.g. traditional OpenSSL format with Proc-Type headers).
        raise ValueError(
            "encrypted private keys are not supported (store it without a passphrase)"
        ) from e
    except (ValueError, UnsupportedAlgorithm) as e:
        raise ValueError("not a PEM private key") from e
    if isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        return key
    raise ValueError(f"unsupported private key type {key_type_of(key.public_key())!r}")
