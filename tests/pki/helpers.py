"""Certificates for tests: a CA, good client certificates and deliberately bad ones.

Shared by the PKI unit tests and the integration tests. Everything is built from real keys;
dates are explicit so tests never depend on the wall clock (use ``NOW`` as "the present").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rail.pki.ca import CertificateAuthority, create_ca, key_usage, signature_hash
from rail.pki.issue import ClientRequest, issue_client_certificate, issue_server_certificate
from rail.pki.keys import PrivateKey, generate_private_key

__all__ = [
    "DEFAULT_EMAILS",
    "DEFAULT_WEBHOOK",
    "NOW",
    "build_certificate",
    "client_request",
    "der",
    "issue_client",
    "issue_server",
    "make_ca",
    "make_expired_client",
    "make_not_yet_valid_client",
    "make_self_signed_client",
    "pem",
]

NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
DEFAULT_EMAILS = ("noreply@ataca.io", "alerts@smtp.ataca.io")
DEFAULT_WEBHOOK = "https://myapp.example/hooks/email"


def make_ca(
    common_name: str = "Rail CA test", key_type: str = "ed25519", now: datetime = NOW
) -> CertificateAuthority:
    """A fresh Rail CA, valid from ``now`` for the default ten years."""
    return create_ca(common_name, now, key_type)


def client_request(
    name: str = "myapp",
    emails: Sequence[str] = DEFAULT_EMAILS,
    webhook: str | None = DEFAULT_WEBHOOK,
    key_type: str = "ed25519",
    validity: timedelta = timedelta(days=90),
) -> ClientRequest:
    """A request that passes ``check_client_request``, unless told otherwise."""
    return ClientRequest(
        name=name, emails=tuple(emails), webhook=webhook, key_type=key_type, validity=validity
    )


def issue_client(
    ca: CertificateAuthority,
    name: str = "myapp",
    emails: Sequence[str] = DEFAULT_EMAILS,
    webhook: str | None = DEFAULT_WEBHOOK,
    key_type: str = "ed25519",
    now: datetime = NOW,
    validity: timedelta = timedelta(days=90),
) -> tuple[x509.Certificate, PrivateKey]:
    """A good client certificate and its key, issued the way ``rail certs issue`` does."""
    key = generate_private_key(key_type)
    request = client_request(name, emails, webhook, key_type, validity)
    return issue_client_certificate(ca, request, key.public_key(), now), key


def issue_server(
    ca: CertificateAuthority,
    hostname: str = "localhost",
    alt_names: Sequence[str] = ("127.0.0.1", "::1"),
    now: datetime = NOW,
) -> tuple[x509.Certificate, PrivateKey]:
    """A server certificate (serverAuth only) from ``ca``, with an ECDSA P-256 key."""
    key = generate_private_key("ecdsa-p256")
    cert = issue_server_certificate(ca, hostname, tuple(alt_names), key.public_key(), now)
    return cert, key


def build_certificate(
    issuer: CertificateAuthority | None,
    *,
    name: str = "myapp",
    emails: Sequence[str] = DEFAULT_EMAILS,
    webhook: str | None = DEFAULT_WEBHOOK,
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=90),
    usages: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.CLIENT_AUTH,),
    is_ca: bool = False,
    key_type: str = "ed25519",
    serial: int | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    """A certificate with any dates and usages, bypassing Rail's issuing checks.

    ``issuer=None`` makes it self-signed (issuer = its own subject, signed by its own key);
    ``usages=None`` leaves out the extended key usage extension entirely.
    """
    key = generate_private_key(key_type)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Rail"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    alt_names: list[x509.GeneralName] = [x509.RFC822Name(e) for e in emails]
    if webhook is not None:
        alt_names.append(x509.UniformResourceIdentifier(webhook))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number() if serial is None else serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None), critical=True
        )
        .add_extension(
            key_usage(digital_signature=True, key_cert_sign=is_ca, crl_sign=is_ca), critical=True
        )
    )
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    signer = key if issuer is None else issuer.private_key
    return builder.sign(signer, signature_hash(signer)), key


def make_expired_client(
    ca: CertificateAuthority, now: datetime = NOW
) -> tuple[x509.Certificate, PrivateKey]:
    """A client certificate from ``ca`` that expired a day before ``now``."""
    return build_certificate(
        ca, not_before=now - timedelta(days=91), not_after=now - timedelta(days=1)
    )


def make_not_yet_valid_client(
    ca: CertificateAuthority, now: datetime = NOW
) -> tuple[x509.Certificate, PrivateKey]:
    """A client certificate from ``ca`` that becomes valid a day after ``now``."""
    return build_certificate(
        ca, not_before=now + timedelta(days=1), not_after=now + timedelta(days=91)
    )


def make_self_signed_client(now: datetime = NOW) -> tuple[x509.Certificate, PrivateKey]:
    """A client-looking certificate (CN, email SANs, clientAuth) that signed itself."""
    return build_certificate(
        None, not_before=now - timedelta(days=1), not_after=now + timedelta(days=90)
    )


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)
