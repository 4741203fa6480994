"""SMTP AUTH (RFC 4954) with a provider's relay: PLAIN, else LOGIN, and only inside TLS.

The relay's credentials never cross the network in clear: :func:`authenticate` refuses
to start unless the session is encrypted (and the configuration refuses ``auth`` without
``tls: required`` or ``implicit``, see :mod:`rail.config.parse`). A refused login is a
local temporary failure (``451 4.7.8``), not the relay's 535: wrong credentials are the
operator's to fix, and bouncing every message meanwhile would lose mail (Postfix's
``smtp_sasl_auth_soft_bounce`` does the same).
"""

from __future__ import annotations

import base64
from typing import Any

import attrs

from rail.delivery.outcome import Reply, SessionError
from rail.delivery.replies import Capabilities

__all__ = ["Credentials", "authenticate", "mechanism", "plain_response"]


@attrs.frozen
class Credentials:
    """A username and password for the relay (the password never in a repr or log)."""

    username: str
    password: str = attrs.field(repr=False)


def mechanism(capabilities: Capabilities) -> str | None:
    """``PLAIN`` if the server offers it, else ``LOGIN``, else None (RFC 4954 §3: the
    mechanisms follow the AUTH keyword; some servers still say ``AUTH=``)."""
    offered: set[str] = set()
    for keyword, params in capabilities.extensions.items():
        if keyword == "AUTH":
            offered.update(params.upper().split())
        elif keyword.startswith("AUTH="):
            offered.update((keyword[5:] + " " + params).upper().split())
    for name in ("PLAIN", "LOGIN"):
        if name in offered:
            return name
    return None


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def plain_response(credentials: Credentials) -> bytes:
    """The PLAIN initial response (RFC 4616): no authorization identity."""
    user = credentials.username.encode("utf-8")
    return _b64(b"\0" + user + b"\0" + credentials.password.encode("utf-8"))


def _local(code: int, enhanced: str, text: str) -> SessionError:
    return SessionError(Reply(code, enhanced, text[:300], remote=False))


async def authenticate(session: Any, credentials: Credentials, relay: str) -> None:
    """Log in on ``session`` (an :class:`~rail.delivery.client.SMTPClientProtocol` that
    is ready); fails with :class:`SessionError`, leaving the session to the caller."""
    if not session.tls_active:
        raise _local(451, "4.7.0", f"refusing to send credentials to {relay} without TLS")
    chosen = mechanism(session.capabilities)
    if chosen is None:
        raise _local(451, "4.7.0", f"relay {relay} offers neither AUTH PLAIN nor AUTH LOGIN")
    if chosen == "PLAIN":
        response = await session.command(
            b"AUTH PLAIN " + plain_response(credentials) + b"\r\n", "AUTH"
        )
    else:
        response = await session.command(b"AUTH LOGIN\r\n", "AUTH")
        for secret in (credentials.username, credentials.password):
            if response.code != 334:
                break
            response = await session.command(_b64(secret.encode("utf-8")) + b"\r\n", "AUTH")
    if response.code == 235:
        return
    if 300 <= response.code < 400:
        raise _local(451, "4.7.0", f"relay {relay} asked for more than {chosen} sends")
    raise _local(451, "4.7.8", f"relay {relay} refused authentication: {response.reply()}")
