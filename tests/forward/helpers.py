"""Keys and DNS for ARC tests: a KeyStore in a temporary directory, and a dkimpy
``dnsfunc`` answering its published records (and any extra ones)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from rail.dkim.keys import KeyStore


def key_store(directory: Path, domains: list[str], now: float) -> KeyStore:
    keys = KeyStore.open(directory)
    keys.ensure(domains, now)
    return keys


def dns_for(
    keys: KeyStore, domains: list[str], extra: dict[str, str] | None = None
) -> Callable[..., bytes | None]:
    records = dict(extra or {})
    for domain in domains:
        for key in keys.published(domain, None):
            records[f"{key.selector}._domainkey.{domain}."] = key.txt

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        text = name.decode("ascii")
        value = records.get(text if text.endswith(".") else text + ".")
        return None if value is None else value.encode("ascii")

    return dnsfunc


def other_rsa_key() -> tuple[bytes, str]:
    """A PEM key and its DKIM record value, for another ADMD's seal."""
    import base64

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")
