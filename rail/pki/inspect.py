"""What Rail makes of a certificate: the answer of ``/api/who`` and ``rail certs inspect``.

The input may come from anyone (``POST /api/who`` needs no authentication), so nothing here
trusts the certificate: malformed extensions become problems, never exceptions, and every
reason Rail would refuse the certificate is listed so an operator can fix all of them at once.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rail.pki.issue import ADMIN_UNIT
from rail.pki.keys import key_type_of

Role = Literal["client", "admin"]

__all__ = [
    "MAX_CERTIFICATE_SIZE",
    "PROBLEM_CA_CERTIFICATE",
    "PROBLEM_EXPIRED",
    "PROBLEM_MALFORMED_EXTENSIONS",
    "PROBLEM_NOT_CLIENT",
    "PROBLEM_NOT_RAIL",
    "PROBLEM_NOT_YET_VALID",
    "PROBLEM_REVOKED",
    "CertificateInfo",
    "Role",
    "certificate_identity",
    "certificate_role",
    "format_time",
    "info_to_json",
    "inspect_certificate",
    "issued_by",
    "parse_certificate",
]

MAX_CERTIFICATE_SIZE = 64 * 1024

PROBLEM_NOT_RAIL = "not issued by this Rail CA"
PROBLEM_CA_CERTIFICATE = "is a CA certificate"
PROBLEM_NOT_CLIENT = "not a client certificate (no clientAuth extended key usage)"
PROBLEM_NOT_YET_VALID = "not yet valid"
PROBLEM_EXPIRED = "expired"
PROBLEM_REVOKED = "revoked"
PROBLEM_MALFORMED_EXTENSIONS = "has malformed extensions"

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.DOTALL
)
_NOT_A_CERTIFICATE = "not a PEM or DER X.509 certificate"


def parse_certificate(data: bytes) -> x509.Certificate:
    """Accept what people paste or upload: a .crt/.pem (possibly a chain or with the text
    dump openssl puts before it), or raw DER. Only the first certificate is used."""
    if len(data) > MAX_CERTIFICATE_SIZE:
        raise ValueError(f"certificate too large (more than {MAX_CERTIFICATE_SIZE} bytes)")
    try:
        match = _PEM_CERTIFICATE.search(data)
        if match is not None:
            certificate = x509.load_pem_x509_certificate(match.group(0))
        elif b"-----BEGIN" in data:
            raise ValueError(_NOT_A_CERTIFICATE)
        else:
            certificate = x509.load_der_x509_certificate(data)
        # cryptography decodes names lazily and raises TypeError/ValueError on malformed
        # ones (a BIT STRING CN, bad UTF-8); decide here, not in the middle of a reply.
        certificate.subject.rfc4514_string()
        certificate.issuer.rfc4514_string()
    except (ValueError, TypeError) as e:
        raise ValueError(_NOT_A_CERTIFICATE) from e
    return certificate


@attrs.frozen
class CertificateInfo:
    client_id: str | None
    senders: tuple[str, ...]
    webhook: str | None
    valid: bool
    revoked: bool
    issued_by_rail: bool
    key_type: str
    serial: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    subject: str
    issuer: str
    problems: tuple[str, ...]
    role: Role = "client"
    """``admin`` for an admin certificate of this Rail (see :func:`certificate_role`)."""


def issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """Whether ``ca_cert`` signed ``cert``: issuer name *and* signature, since a name is
    free for anyone to copy."""
    if cert.issuer != ca_cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
    except Exception:
        # A bad signature, a mismatched algorithm or one cryptography cannot handle each raise
        # something different; none of them means "signed by us".
        return False
    return True


def _common_name(cert: x509.Certificate) -> str | None:
    common_names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common_names[0].value) if common_names else None


def certificate_role(cert: x509.Certificate) -> Role:
    """``admin`` for a certificate whose subject has ``OU=admin`` (``rail certs issue
    --admin``), else ``client``. Meaningful only for a certificate issued by Rail's CA,
    which sets that unit on admin certificates alone."""
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return "admin" if any(unit.value == ADMIN_UNIT for unit in units) else "client"


def _senders_and_webhook(cert: x509.Certificate) -> tuple[tuple[str, ...], str | None]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), None
    senders = tuple(san.get_values_for_type(x509.RFC822Name))
    webhook = next(
        (
            uri
            for uri in san.get_values_for_type(x509.UniformResourceIdentifier)
            if uri.lower().startswith(("https://", "http://"))
        ),
        None,
    )
    return senders, webhook


def certificate_identity(
    cert: x509.Certificate,
) -> tuple[str | None, tuple[str, ...], str | None]:
    """``(client name, senders, webhook)`` as Rail reads them from a certificate: the CN, the
    email SANs and the first http(s) URI SAN.

    Raises ``ValueError`` if the extensions cannot be parsed.
    """
    senders, webhook = _senders_and_webhook(cert)
    return _common_name(cert), senders, webhook


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def allows_client_auth(cert: x509.Certificate) -> bool:
    """A certificate without any EKU is "any purpose" to OpenSSL, but Rail wants the issuer to
    have said "client" explicitly: its own certificates always do."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH in eku


def _key_type(cert: x509.Certificate) -> str:
    try:
        return key_type_of(cert.public_key())
    except Exception:
        # An algorithm cryptography cannot load is exactly what "unknown" is for.
        return "unknown"


def inspect_certificate(
    cert: x509.Certificate,
    ca_cert: x509.Certificate,
    revoked_serials: frozenset[int],
    now: datetime,
) -> CertificateInfo:
    problems: list[str] = []
    issued_by_rail = issued_by(cert, ca_cert)
    if not issued_by_rail:
        problems.append(PROBLEM_NOT_RAIL)
    senders: tuple[str, ...] = ()
    webhook: str | None = None
    try:
        senders, webhook = _senders_and_webhook(cert)
        ca_flag = is_ca(cert)
        client_auth = allows_client_auth(cert)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        problems.append(PROBLEM_MALFORMED_EXTENSIONS)
    else:
        if ca_flag:
            problems.append(PROBLEM_CA_CERTIFICATE)
        if not client_auth:
            problems.append(PROBLEM_NOT_CLIENT)
    not_before = cert.not_valid_before_utc
    not_after = cert.not_valid_after_utc
    if now < not_before:
        problems.append(PROBLEM_NOT_YET_VALID)
    if now > not_after:
        problems.append(PROBLEM_EXPIRED)
    # Serials are only unique per issuer: a foreign certificate that happens to share a serial
    # with one of ours is not "revoked", it is simply not ours.
    revoked = issued_by_rail and cert.serial_number in revoked_serials
    if revoked:
        problems.append(PROBLEM_REVOKED)
    return CertificateInfo(
        client_id=_common_name(cert),
        senders=senders,
        webhook=webhook,
        valid=not problems,
        revoked=revoked,
        issued_by_rail=issued_by_rail,
        key_type=_key_type(cert),
        serial=format(cert.serial_number, "x"),
        not_before=not_before,
        not_after=not_after,
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        problems=tuple(problems),
        role=certificate_role(cert) if issued_by_rail else "client",
    )


def format_time(when: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, the form used throughout Rail's JSON."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def info_to_json(info: CertificateInfo) -> dict[str, Any]:
    return {
        "client_id": info.client_id,
        "role": info.role,
        "senders": list(info.senders),
        "webhook": info.webhook,
        "valid": info.valid,
        "revoked": info.revoked,
        "issued_by_rail": info.issued_by_rail,
        "key_type": info.key_type,
        "serial": info.serial,
        "not_before": format_time(info.not_before),
        "not_after": format_time(info.not_after),
        "fingerprint_sha256": info.fingerprint_sha256,
        "subject": info.subject,
        "issuer": info.issuer,
        "problems": list(info.problems),
    }
