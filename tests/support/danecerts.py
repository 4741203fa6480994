"""Certificates made in a test for DANE: a root CA, an intermediate and server certificates,
and the TLSA records that match them.

Keys are ECDSA P-256 (fast to make). Everything is a ``cryptography`` object; PEM files
for a server are written by :meth:`Issued.write`.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from collections.abc import Sequence
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rail.delivery.dane import TLSARecord

__all__ = ["NOW", "Issued", "issue", "pem", "tlsa_for"]

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
"""The "current" time the certificates below are valid at by default."""


@attrs.frozen
class Issued:
    """A certificate, its key, and every certificate above it (issuer first, up to and
    including the self-signed root; empty for a root)."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    def presented(self, include_root: bool = False) -> tuple[x509.Certificate, ...]:
        """The chain a server sends: its certificate, the intermediates, and the root
        only if ``include_root``."""
        above = self.chain if include_root else tuple(c for c in self.chain if not _root(c))
        return (self.certificate, *above)

    def write(self, directory: Path, name: str, include_root: bool = False) -> tuple[Path, Path]:
        """``name.crt`` (the :meth:`presented` chain) and ``name.key`` in PEM."""
        cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
        cert_path.write_bytes(
            b"".join(
                c.public_bytes(serialization.Encoding.PEM) for c in self.presented(include_root)
            )
        )
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path


def issue(
    common_name: str,
    *,
    issuer: Issued | None = None,
    ca: bool = False,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    not_before: datetime.datetime = NOW - datetime.timedelta(days=30),
    not_after: datetime.datetime = NOW + datetime.timedelta(days=30),
) -> Issued:
    """A certificate for ``common_name``: self-signed without ``issuer``; a CA with
    ``ca``; server certificates get ``dns_names`` and ``ip_addresses`` as SANs."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    signer_key = issuer.key if issuer else key
    issuer_name = issuer.certificate.subject if issuer else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    if dns_names or ip_addresses:
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    certificate = builder.sign(signer_key, hashes.SHA256())
    chain = (issuer.certificate, *issuer.chain) if issuer is not None else ()
    return Issued(certificate, key, chain)


def _root(certificate: x509.Certificate) -> bool:
    return certificate.issuer == certificate.subject


def tlsa_for(certificate: x509.Certificate, usage: int, selector: int, matching: int) -> TLSARecord:
    """The TLSA record of ``usage`` that matches ``certificate``."""
    if selector == 0:
        selected = certificate.public_bytes(serialization.Encoding.DER)
    else:
        selected = certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if matching == 1:
        selected = hashlib.sha256(selected).digest()
    elif matching == 2:
        selected = hashlib.sha512(selected).digest()
    return TLSARecord(usage, selector, matching, selected)


def pem(certificate: x509.Certificate) -> bytes:
    """``certificate`` in PEM."""
    return certificate.public_bytes(serialization.Encoding.PEM)
