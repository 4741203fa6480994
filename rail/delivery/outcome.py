"""The vocabulary of delivery results, shared by the SMTP client, routing and the scheduler.

A :class:`Reply` is either what a remote server said or what Rail concluded locally (DNS
failure, refused connection, timeout); ``remote`` tells which, because an operator reading
``last_reply`` needs to know whether the recipient's server or Rail decided. The class of
the code alone decides the recipient's fate (RFC 5321 §4.2.1): 2xx sent, 4xx deferred,
5xx bounced.
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = [
    "Disposition",
    "MessageResult",
    "OutboundMessage",
    "RecipientResult",
    "Reply",
    "SessionError",
    "disposition",
]

Disposition = Literal["sent", "deferred", "bounced"]


@attrs.frozen
class Reply:
    """An SMTP reply: ``code`` 200 to 599, optional enhanced status (``"5.1.1"``) and text.

    ``remote`` is False when Rail made the reply up for a local conclusion.
    """

    code: int
    enhanced: str | None
    text: str
    remote: bool = True

    def __str__(self) -> str:
        parts = [str(self.code)]
        if self.enhanced:
            parts.append(self.enhanced)
        if self.text:
            parts.append(self.text)
        return " ".join(parts)


def disposition(reply: Reply) -> Disposition:
    """2xx sent, 4xx deferred, anything else bounced."""
    if 200 <= reply.code < 300:
        return "sent"
    if 400 <= reply.code < 500:
        return "deferred"
    return "bounced"


@attrs.frozen
class OutboundMessage:
    """One message to hand to one remote server.

    ``data`` is the complete message, CRLF line ends, DKIM signatures already prepended:
    exactly what goes between DATA and the final dot (before dot-stuffing). ``sender`` is
    the reverse-path; ``""`` is the null reverse-path of a DSN.
    """

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    smtputf8: bool = False
    eight_bit: bool = False


@attrs.frozen
class RecipientResult:
    address: str
    reply: Reply


@attrs.frozen
class MessageResult:
    """The fate of each recipient of one transaction, in the order of ``recipients``.

    A recipient refused at RCPT carries that reply; one accepted at RCPT carries the reply
    to the end of DATA (or to MAIL FROM if the sender was refused).
    """

    recipients: tuple[RecipientResult, ...]


class SessionError(Exception):
    """The connection or session failed before a transaction's outcome was known.

    ``reply`` is the remote reply that ended it or a local one (``remote=False``) for a
    refused connection, a timeout or a lost connection. ``tls_failed`` marks a failed
    STARTTLS handshake, after which the same host is retried in plaintext.
    ``after_data`` marks a loss after the final dot was sent: the remote may have taken
    the message, so a retry may duplicate it (the safe side of RFC 5321 §6.1).
    """

    def __init__(self, reply: Reply, *, tls_failed: bool = False, after_data: bool = False):
        super().__init__(str(reply))
        self.reply = reply
        self.tls_failed = tls_failed
        self.after_data = after_data
