"""Issuing certificates from Rail's CA: client identities and the development server certificate.

A client certificate *is* the client's configuration: its CN names it in audit logs, its email
SANs are the senders it may use and its URI SAN is where inbound mail goes. Everything is
validated before signing because a certificate cannot be corrected afterwards, only revoked.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rail.pki.ca import CLOCK_SKEW, CertificateAuthority, key_usage, signature_hash
from rail.pki.keys import KEY_TYPES
from rail.pki.names import (
    split_address,
    validate_client_name,
    validate_sender,
    validate_webhook,
)

__all__ = [
    "ADMIN_UNIT",
    "DEFAULT_SERVER_VALIDITY",
    "MAX_SENDERS",
    "MAX_VALIDITY",
    "MIN_VALIDITY",
    "ClientRequest",
    "check_client_request",
    "issue_client_certificate",
    "issue_server_certificate",
    "normalize_sender",
]

MIN_VALIDITY = timedelta(days=1)
MAX_VALIDITY = timedelta(days=3650)
MAX_SENDERS = 100
"""Keeps a certificate well under the 64 KiB that ``/api/who`` accepts."""
ADMIN_UNIT = "admin"
"""The organizational unit of an admin certificate's subject (``CN=ops,OU=admin,O=Rail``):
the role is in the certificate Rail's CA signed, so the server reads it at the handshake
with no registry look-up, and no client certificate (which has no OU) can claim it."""
DEFAULT_SERVER_VALIDITY = timedelta(days=397)
"""The CA/Browser Forum ceiling, so the certificate is not refused by clients that enforce it."""


@attrs.frozen
class ClientRequest:
    name: str
    emails: tuple[str, ...]
    webhook: str | None
    key_type: str
    validity: timedelta
    admin: bool = False
    """An admin certificate: the admin API and ``rail queue``, never mail (no senders)."""


def normalize_sender(address: str) -> str:
    """The form stored in the certificate: local part untouched, domain lowercased.

    The local part is case-sensitive for sender authorization, so it is kept exactly as the
    operator wrote it; the domain is not, so one spelling is chosen for logs and routing.
    """
    local, domain = split_address(address)
    return f"{local}@{domain.lower()}"


def check_client_request(req: ClientRequest, allow_http_loopback: bool) -> list[str]:
    """Every problem with ``req``, each prefixed with the CLI option that supplied it."""
    problems: list[str] = []
    name_problem = validate_client_name(req.name)
    if name_problem is not None:
        problems.append(f"--name {req.name!r}: {name_problem}")
    if req.admin:
        if req.emails:
            problems.append("--email: an admin certificate cannot send mail; omit --email")
        if req.webhook is not None:
            problems.append("--webhook: an admin certificate receives no mail; omit --webhook")
    elif not req.emails:
        problems.append("--email: at least one sender address is required")
    elif len(req.emails) > MAX_SENDERS:
        problems.append(f"--email: at most {MAX_SENDERS} sender addresses are allowed")
    seen: dict[str, str] = {}
    for email in req.emails:
        problem = validate_sender(email)
        if problem is not None:
            problems.append(f"--email {email!r}: {problem}")
            continue
        normalized = normalize_sender(email)
        if normalized in seen:
            problems.append(f"--email {email!r}: duplicate of {seen[normalized]!r}")
        else:
            seen[normalized] = email
    if req.webhook is not None:
        problem = validate_webhook(req.webhook, allow_http_loopback)
        if problem is not None:
            problems.append(f"--webhook {req.webhook!r}: {problem}")
    if req.key_type not in KEY_TYPES:
        problems.append(f"--key-type {req.key_type!r}: must be one of {', '.join(KEY_TYPES)}")
    if not MIN_VALIDITY <= req.validity <= MAX_VALIDITY:
        problems.append(
            f"--validity: must be between {MIN_VALIDITY.days} day and {MAX_VALIDITY.days} days"
        )
    return problems


def _subject(common_name: str, admin: bool = False) -> x509.Name:
    """``CN=<name>,O=Rail`` (RFC 4514 order; attributes are stored most significant first),
    with ``OU=admin`` between them for an admin certificate."""
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Rail")]
    if admin:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ADMIN_UNIT))
    if len(common_name) <= 64:  # the X.520 upper bound for CN; SANs carry longer names
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _sign_end_entity(
    ca: CertificateAuthority,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    now: datetime,
    validity: timedelta,
    usage: x509.ObjectIdentifier,
    alt_names: list[x509.GeneralName],
) -> x509.Certificate:
    ca_not_after = ca.certificate.not_valid_after_utc
    if ca_not_after <= now:
        raise ValueError(
            f"the Rail CA certificate expired at {ca_not_after.isoformat()}; "
            "no certificate can be issued from it"
        )
    # A certificate outliving its CA would be refused by every verifier anyway; clamping makes
    # the date printed by 'rail certs list' the real one.
    not_after = min(now + validity, ca_not_after)
    try:
        ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca_ski.value
        )
    except x509.ExtensionNotFound:
        authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca.private_key.public_key()
        )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            key_usage(
                digital_signature=True,
                # RSA key exchange (TLS 1.2 without ECDHE) encrypts to the key.
                key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(authority_key_id, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ca.private_key, signature_hash(ca.private_key))


def issue_client_certificate(
    ca: CertificateAuthority,
    req: ClientRequest,
    public_key: CertificatePublicKeyTypes,
    now: datetime,
) -> x509.Certificate:
    """Sign a client identity. ``req`` is re-checked so no caller can sign an invalid one.

    The http-loopback policy is the caller's to enforce with ``check_client_request``; here
    any structurally valid webhook is accepted.
    """
    problems = check_client_request(req, allow_http_loopback=True)
    if problems:
        raise ValueError("; ".join(problems))
    alt_names: list[x509.GeneralName] = [
        x509.RFC822Name(normalize_sender(email)) for email in req.emails
    ]
    if req.webhook is not None:
        alt_names.append(x509.UniformResourceIdentifier(req.webhook))
    return _sign_end_entity(
        ca,
        _subject(req.name, req.admin),
        public_key,
        now,
        req.validity,
        ExtendedKeyUsageOID.CLIENT_AUTH,
        alt_names,
    )


def _server_alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name.lower())


def issue_server_certificate(
    ca: CertificateAuthority,
    hostname: str,
    alt_names: tuple[str, ...],
    public_key: CertificatePublicKeyTypes,
    now: datetime,
    validity: timedelta = DEFAULT_SERVER_VALIDITY,
) -> x509.Certificate:
    """The development (``tls.self_signed``) server certificate.

    Issued by Rail's CA rather than self-signed so that clients need to trust only one file,
    ``ca.crt``, for both the server and (implicitly) the client certificates.
    The hostname is always included as a SAN: modern verifiers ignore the CN.
    """
    names: list[x509.GeneralName] = []
    for name in (hostname, *alt_names):
        general_name = _server_alt_name(name)
        if general_name not in names:
            names.append(general_name)
    return _sign_end_entity(
        ca,
        _subject(hostname),
        public_key,
        now,
        validity,
        ExtendedKeyUsageOID.SERVER_AUTH,
        names,
    )
