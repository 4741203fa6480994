"""The ``client`` value of the outbound messages forwarding creates, and what it tells.

Forwarded mail goes through the outbound queue like any other, so status, logs and the
admin queue show it under a ``client``. Certificate names cannot contain ``:``, so these
values never collide with a real client: ``forward:<alias>`` for mail re-sent because
it was addressed to ``alias`` (a forwarding route), ``srs-return:<domain>`` for a bounce
to an SRS address of ``domain`` handed back to the original sender. The domain in
either is the *forwarding domain*, the one delivery signs such mail for (DKIM), since
Rail cannot sign for the From domain of someone else's mail.
"""

from __future__ import annotations

__all__ = ["forward_client", "forwarding_domain", "return_client"]

_FORWARD = "forward:"
_RETURN = "srs-return:"


def forward_client(alias: str) -> str:
    """The client value of mail forwarded because it was sent to ``alias``."""
    local, _, domain = alias.rpartition("@")
    return f"{_FORWARD}{local}@{domain.lower()}"


def return_client(domain: str) -> str:
    """The client value of a bounce returned through an SRS address of ``domain``."""
    return f"{_RETURN}{domain.lower()}"


def forwarding_domain(client: str) -> str | None:
    """The domain to DKIM-sign forwarded mail of ``client`` for, or None when ``client``
    is not forwarding's (sign for the From domain, as for all other mail)."""
    if client.startswith(_FORWARD):
        return client.rpartition("@")[2] or None
    if client.startswith(_RETURN):
        return client[len(_RETURN) :] or None
    return None
