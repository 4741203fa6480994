"""A PKCS#12 bundle of a client certificate, its key and Rail's CA, for a browser.

Browsers import client certificates as PKCS#12 files (``.p12``); ``rail certs issue
--admin --p12`` writes one next to the PEM files so an operator can use the console.
The bundle is encrypted with the password given (PBES2, AES-256-CBC, PBKDF2-SHA256, a
SHA-256 MAC), which current Firefox, Chromium and NSS's ``pk12util`` read. Browsers do
not offer Ed25519 client keys in TLS, so such a key is refused here: issue the
certificate with ``--key-type ecdsa-p256`` (the CLI picks it for ``--p12``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import pkcs12

__all__ = ["BROWSER_KEY_TYPE", "MIN_PASSWORD", "BundleError", "read_password", "write_bundle"]

BROWSER_KEY_TYPE = "ecdsa-p256"
"""The key type ``--p12`` uses unless told otherwise: one every browser offers."""

MIN_PASSWORD = 8
"""The shortest bundle password accepted, in characters."""


class BundleError(ValueError):
    """The bundle cannot be made (the message is for the operator)."""


def write_bundle(
    certificate_path: Path, key_path: Path, ca: x509.Certificate, out: Path, password: bytes
) -> Path:
    """Write ``out`` (mode 0600): the certificate and key from their PEM files, with
    ``ca`` as the chain, encrypted with ``password``; its friendly name is the
    certificate's common name. Returns ``out``."""
    if len(password) < MIN_PASSWORD:
        raise BundleError(f"the bundle password must have at least {MIN_PASSWORD} characters")
    certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raise BundleError(
            "browsers do not accept Ed25519 client keys: issue with --key-type ecdsa-p256"
        )
    names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(names[0].value) if names else "rail"
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(100_000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password)
    )
    data = pkcs12.serialize_key_and_certificates(
        name.encode("utf-8"),
        key,  # type: ignore[arg-type]
        certificate,
        [ca],
        encryption,
    )
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    return out


def read_password(file: Path | None, prompt: Callable[[str], str]) -> bytes:
    """The bundle password: the first line of ``file``, or typed twice at ``prompt``
    (without echo); raises :class:`BundleError` when the two differ or it is too short."""
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise BundleError(f"{file}: {error.strerror or error}") from error
        password = text[0] if text else ""
    else:
        password = prompt("Password for the .p12 bundle: ")
        if prompt("Again: ") != password:
            raise BundleError("the passwords differ")
    if len(password) < MIN_PASSWORD:
        raise BundleError(f"the bundle password must have at least {MIN_PASSWORD} characters")
    return password.encode("utf-8")
