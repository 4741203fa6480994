"""Certificates with chosen names and validity, standing in for ones an ACME CA issued."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rail.pki.tls import ServerMaterial

DAY = 86400.0
NOW = 1_800_000_000.0
"""A fixed "now" (2027-01-15) for Clock-driven tests."""


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def material(
    names: tuple[str, ...] = ("mail.rail.test",),
    *,
    not_before: float = NOW - DAY,
    not_after: float = NOW + 90 * DAY,
    serial: int = 1,
) -> ServerMaterial:
    """A self-signed leaf (P-256) for ``names`` valid between the two times."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(at(not_before))
        .not_valid_after(at(not_after))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return ServerMaterial(chain=(certificate,), key=key)


def leaf(names: tuple[str, ...] = ("mail.rail.test",), **kwargs: float) -> x509.Certificate:
    return material(names, **kwargs).chain[0]


__all__ = ["DAY", "NOW", "at", "leaf", "material"]
