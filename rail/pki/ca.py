"""Rail's own certificate authority: the root that every client certificate chains to.

The CA signs only end-entity certificates (``path_length=0``): Rail never delegates issuance,
so a leaked client key can never be turned into a sub-CA.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from rail.pki.keys import PrivateKey, generate_private_key

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_CA_VALIDITY",
    "CertificateAuthority",
    "create_ca",
    "key_usage",
    "signature_hash",
]

CLOCK_SKEW = timedelta(minutes=5)
"""How far back ``notBefore`` is set, so a peer whose clock lags ours still accepts a
certificate that was issued a moment ago."""

DEFAULT_CA_VALIDITY = timedelta(days=3652)


@attrs.frozen
class CertificateAuthority:
    certificate: x509.Certificate
    private_key: PrivateKey


def signature_hash(private_key: PrivateKey) -> hashes.SHA256 | None:
    """The digest to pass to ``sign()``: EdDSA hashes internally and must be given ``None``."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return None
    return hashes.SHA256()


def key_usage(
    *,
    digital_signature: bool = False,
    key_encipherment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    """``x509.KeyUsage`` with the four bits Rail uses, the other five off."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def create_ca(
    common_name: str,
    now: datetime,
    key_type: str = "ed25519",
    validity: timedelta = DEFAULT_CA_VALIDITY,
) -> CertificateAuthority:
    private_key = generate_private_key(key_type)
    # Most significant first, so the RFC 4514 form reads "CN=...,O=Rail".
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Rail"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    public_key = private_key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(private_key, signature_hash(private_key))
    )
    return CertificateAuthority(certificate=certificate, private_key=private_key)
