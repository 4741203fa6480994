"""Revocations published as a CRL signed by Rail's CA.

The registry is the source of truth; the CRL is its signed export. A signed file lets the TLS
layer (and any other node, or an operator with ``openssl crl``) trust the list without
trusting whoever wrote the file, and it is the format every TLS stack already understands.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from rail.pki.ca import CLOCK_SKEW, CertificateAuthority, signature_hash

__all__ = [
    "DEFAULT_NEXT_UPDATE",
    "build_crl",
    "crl_pem",
    "parse_crl",
    "revoked_serials",
]

DEFAULT_NEXT_UPDATE = timedelta(days=7)


def build_crl(
    ca: CertificateAuthority,
    revoked: Sequence[tuple[int, datetime]],
    now: datetime,
    next_update: timedelta = DEFAULT_NEXT_UPDATE,
    crl_number: int | None = None,
) -> x509.CertificateRevocationList:
    """Sign the full list of revoked serials.

    ``crl_number`` must increase with each CRL (RFC 5280 §5.2.3); the default, the Unix time
    of ``now``, does so without keeping a counter anywhere. ``lastUpdate`` is back-dated like
    certificates' ``notBefore`` so a verifier whose clock lags does not call it "not yet valid".
    Verifiers that enforce ``nextUpdate`` (OpenSSL with CRL checking) refuse the CRL after it,
    so it must be rebuilt before then, even when nothing changed.
    """
    number = int(now.timestamp()) if crl_number is None else crl_number
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now - CLOCK_SKEW)
        .next_update(now + next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
            critical=False,
        )
    )
    for serial, revoked_at in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(revoked_at)
            .build()
        )
    return builder.sign(ca.private_key, signature_hash(ca.private_key))


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def parse_crl(data: bytes) -> x509.CertificateRevocationList:
    """Read a PEM (as Rail writes it) or DER CRL."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as e:
        raise ValueError("not a PEM or DER certificate revocation list") from e


def revoked_serials(
    crl: x509.CertificateRevocationList, ca_cert: x509.Certificate
) -> frozenset[int]:
    """The serials revoked by ``crl``, once it is proven to come from ``ca_cert``.

    Trusting an unsigned list would let anyone who can write the file un-revoke a
    certificate; checking the issuer name as well catches a CRL left over from another CA.
    """
    if crl.issuer != ca_cert.subject:
        raise ValueError(
            f"CRL issuer {crl.issuer.rfc4514_string()!r} is not this CA"
            f" ({ca_cert.subject.rfc4514_string()!r})"
        )
    try:
        valid = crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]
    except Exception as e:
        raise ValueError("CRL signature does not verify with the CA key") from e
    if not valid:
        raise ValueError("CRL signature does not verify with the CA key")
    return frozenset(entry.serial_number for entry in crl)


def crl_number(crl: x509.CertificateRevocationList) -> int:
    """The CRL's sequence number (RFC 5280 §5.2.3); -1 when absent."""
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return -1
