"""Sender authorization (RAIL.md §3): an app may send only as its certificate's addresses."""

from __future__ import annotations

from collections.abc import Iterable

from rail.pki.names import sender_matches
from rail.policy.identity import ClientIdentity
from rail.policy.verdict import Reject

__all__ = ["ADMIN_CANNOT_SEND", "NOT_AUTHORIZED", "check_from_header", "check_sender"]

NOT_AUTHORIZED = Reject(
    550, "5.7.1", "Sender not authorized", http_status=403, error="SENDER_NOT_AUTHORIZED"
)

ADMIN_CANNOT_SEND = Reject(
    550,
    "5.7.1",
    "Admin certificates cannot send mail",
    http_status=403,
    error="ADMIN_CANNOT_SEND",
)
"""An admin certificate is an operator's credential, not an application's: mail sent with
it would carry no client's name, so it is refused whatever the sender."""


def _allowed(identity: ClientIdentity, address: str) -> bool:
    return any(sender_matches(allowed, address) for allowed in identity.senders)


def check_sender(identity: ClientIdentity, address: str) -> Reject | None:
    """The envelope sender must be one of the certificate's email SANs; the null
    reverse-path is refused, since an app has no reason to send bounces through Rail.
    An admin certificate may send as nobody."""
    if identity.role == "admin":
        return ADMIN_CANNOT_SEND
    if not address or not _allowed(identity, address):
        return NOT_AUTHORIZED
    return None


def check_from_header(identity: ClientIdentity, addresses: Iterable[str]) -> Reject | None:
    """Every address in the From header must be allowed; an empty list is the caller's
    problem (a message without From is completed or refused before this)."""
    for address in addresses:
        if not _allowed(identity, address):
            return Reject(
                550,
                "5.7.1",
                "From header address not authorized",
                http_status=403,
                error="SENDER_NOT_AUTHORIZED",
            )
    return None
