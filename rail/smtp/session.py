"""What a port decides about an SMTP session, separated from how SMTP is spoken.

:class:`~rail.smtp.server.RailESMTP` frames, orders and times the conversation; a
:class:`Session` (one per connection: submission on 465, inbound on 25) answers the
questions that differ by port. Answers are :class:`Reply` values, or Deferreds of them
when they need the store or DNS.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs

from rail.policy.verdict import Reject

__all__ = ["Envelope", "Reply", "Session", "reply_of"]


@attrs.frozen
class Reply:
    """One SMTP reply; ``enhanced`` is the RFC 3463 code, sent on every reply after EHLO."""

    code: int
    enhanced: str
    text: str

    @property
    def failed(self) -> bool:
        return self.code >= 400


def reply_of(verdict: Reject | Reply) -> Reply:
    return verdict if isinstance(verdict, Reply) else Reply(*_fields(verdict))


def _fields(verdict: Reject) -> tuple[int, str, str]:
    return verdict.code, verdict.enhanced, verdict.text


@attrs.frozen
class Envelope:
    """The transaction so far. ``sender`` is ``""`` for the null reverse-path."""

    helo: str
    peer: str
    sender: str
    recipients: tuple[str, ...] = ()
    declared_size: int | None = None
    eight_bit: bool = False
    smtputf8: bool = False
    tls: bool = False


class Session(Protocol):
    """The port-specific half of an SMTP session."""

    def handshake_completed(self, transport: Any) -> None:
        """TLS is up (implicit TLS, or after STARTTLS): read the peer's certificate."""

    def check_mail(self, envelope: Envelope) -> Reject | Any | None:
        """MAIL FROM was well formed; ``None`` accepts. May return a Deferred."""

    def check_rcpt(self, envelope: Envelope, recipient: str) -> Reject | Any | None:
        """A well-formed RCPT TO within the recipient limit; may return a Deferred."""

    def deliver(self, envelope: Envelope, data: bytes) -> Reply | Reject | Any:
        """The complete message (CRLF lines, dot-unstuffed): store it and answer. The
        Deferred fires with the end-of-DATA reply; a failure becomes ``451 4.3.0``."""
