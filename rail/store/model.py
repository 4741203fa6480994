"""What the queue stores and answers: plain values shared by SMTP, the API and delivery.

Status vocabulary (RAIL.md §4): a recipient is ``queued`` (never tried), ``deferred``
(tried, will retry), ``sent`` or ``bounced``.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
from zope.interface import Interface

__all__ = [
    "Accepted",
    "Conflict",
    "IQueueStore",
    "IdempotencyKey",
    "MessageStatus",
    "NewMessage",
    "QueueFullError",
    "RecipientStatus",
    "Replayed",
    "StoreUnavailableError",
    "overall_status",
]

Channel = Literal["smtp", "api"]
RecipientState = Literal["queued", "deferred", "sent", "bounced"]


@attrs.frozen
class NewMessage:
    """A message accepted by SMTP or the API, ready to be made durable.

    ``data`` is the complete message with CRLF line ends, exactly the bytes that will be
    DKIM-signed and sent. ``id`` is a ULID chosen by the caller (it already appears in the
    Received and Message-ID headers inside ``data``).
    """

    id: str
    client: str
    sender: str
    recipients: tuple[str, ...]
    data: bytes
    channel: Channel
    received_at: float
    smtputf8: bool = False
    eight_bit: bool = False


@attrs.frozen
class IdempotencyKey:
    """An API client's ``request_id``: a second request with the same ``key`` and the same
    ``fingerprint`` replays the first answer; another fingerprint is a conflict."""

    key: str
    fingerprint: str


@attrs.frozen
class Accepted:
    """The message and its recipient rows are on disk (fsynced)."""

    id: str
    recipients: int


@attrs.frozen
class Replayed:
    """The idempotency key was seen before with the same payload: nothing new was queued."""

    id: str
    recipients: int


@attrs.frozen
class Conflict:
    """The idempotency key was seen before with a different payload: nothing was queued."""

    id: str


class QueueFullError(Exception):
    """Free disk under the floor, or queue at capacity: retry later (452 4.3.1 / 503)."""


class StoreUnavailableError(Exception):
    """The store failed (I/O error, corrupt database): retry later (451 4.3.0 / 503)."""


@attrs.frozen
class RecipientStatus:
    address: str
    status: RecipientState
    attempts: int
    last_reply: str | None
    next_attempt_at: float | None
    updated_at: float


@attrs.frozen
class MessageStatus:
    """Overall status: ``queued`` while no recipient was tried, ``deferred`` while any is
    pending after a failed try, ``sent`` when all were sent, ``bounced`` when none is
    pending and at least one bounced."""

    id: str
    client: str
    sender: str
    channel: Channel
    size: int
    received_at: float
    status: RecipientState
    recipients: tuple[RecipientStatus, ...]


class IQueueStore(Interface):
    """The durable queue. Every method returns a Deferred and never blocks the reactor."""

    def accept(message: NewMessage, idempotency: IdempotencyKey | None = None) -> Any:  # noqa: N805
        """Make ``message`` durable; fires with Accepted, Replayed or Conflict once the
        data is fsynced, or fails with QueueFullError or StoreUnavailableError (and then
        nothing of the message is stored)."""

    def status(client: str, message_id: str) -> Any:  # noqa: N805
        """Fires with the MessageStatus of ``message_id`` if ``client`` owns it, else None."""

    def close() -> Any:
        """Finish pending work, then release the database; fires when done."""


def overall_status(states: tuple[RecipientState, ...]) -> RecipientState:
    """The message-level status from its recipients' states, by the rule in
    :class:`MessageStatus`; one function so every store and the API agree."""
    if any(state == "deferred" for state in states):
        return "deferred"
    if any(state == "queued" for state in states):
        return "queued"
    if any(state == "bounced" for state in states):
        return "bounced"
    return "sent"
