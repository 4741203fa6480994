"""Who a connection or request is, as read from its verified client certificate.

The TLS layer has already checked chain, validity, EKU and revocation, so everything here
is an authenticated fact about the peer.
"""

from __future__ import annotations

import attrs
from cryptography import x509

from rail.pki.inspect import Role, certificate_identity, certificate_role

__all__ = ["ClientIdentity", "identity_from_certificate"]


@attrs.frozen
class ClientIdentity:
    """An application: its name (the CN, for audit logs), allowed senders and webhook.
    ``role`` is ``admin`` for an operator's certificate, which may use the admin API and
    may not send mail."""

    name: str
    senders: tuple[str, ...]
    webhook: str | None = None
    serial: int = 0
    role: Role = "client"


def identity_from_certificate(certificate: x509.Certificate) -> ClientIdentity:
    """Raises ``ValueError`` for a certificate without a CN or with unreadable extensions."""
    name, senders, webhook = certificate_identity(certificate)
    if not name:
        raise ValueError("client certificate has no common name")
    return ClientIdentity(
        name=name,
        senders=senders,
        webhook=webhook,
        serial=certificate.serial_number,
        role=certificate_role(certificate),
    )
