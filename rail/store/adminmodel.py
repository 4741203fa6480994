"""What the admin API and a client's message listing ask of the queue, and what it answers.

Plain values and the :class:`IAdminQueue` interface, shared by the SQLite store
(:mod:`rail.store.admin` holds its SQL), the in-memory fake and the HTTP resources.

Hold is a flag, not a recipient status: a held message keeps its pending recipients
``queued`` or ``deferred`` with no next attempt time, so no claim finds them, and a
``holds`` row says who held it and when. Its overall status reads ``held``. Delete makes
every pending recipient ``deleted`` (final, no DSN) with the operator's reason as its last
reply; bounce makes them ``bounced`` and sends the DSN through the path a remote 5xx takes.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
from zope.interface import Interface

from rail.store.model import MessageMeta, MessageStatus

__all__ = [
    "HEAD_BYTES",
    "LISTED_STATUSES",
    "MAX_PAGE",
    "SCAN_BUDGET",
    "AdminAction",
    "AdminOutcome",
    "Attempt",
    "IAdminQueue",
    "MessageDetail",
    "MessageSummary",
    "Page",
    "QueueQuery",
    "RetryTarget",
]

HEAD_BYTES = 64 * 1024
"""How much of a stored message ``show`` reads for its header section."""

MAX_PAGE = 500
"""The most messages one page may hold (``limit``)."""

SCAN_BUDGET = 5000
"""The most messages one page request examines, newest first from its cursor. A filter
that matches rarely returns a short (even empty) page with a cursor to go on from, so
no request costs more as the store grows."""

LISTED_STATUSES = (
    "queued",
    "deferred",
    "held",
    "sent",
    "bounced",
    "failed",
    "deleted",
    "suppressed",
)
"""What ``status`` may filter on: a message is listed under a recipient status when at
least one of its recipients has it, and under ``held`` while it is on hold."""

AdminOutcome = Literal["done", "not_found", "not_pending", "already_held", "not_held"]
"""What a hold, release, delete or bounce did: ``done``; or nothing, because the message
does not exist, has no pending recipient, is already held, or is not held."""


@attrs.frozen
class QueueQuery:
    """A page request. ``client``: only that client's messages (the client listing always
    sets it); ``domain`` and ``recipient`` match any recipient (domain case-insensitive,
    address exactly); ``older_than``/``newer_than`` bound ``received_at`` (seconds since
    the epoch, exclusive/inclusive); ``request_id``: the message a client sent under that
    id (remembered 24 hours); ``cursor``: the ``next_cursor`` of the previous page."""

    status: str | None = None
    client: str | None = None
    domain: str | None = None
    recipient: str | None = None
    older_than: float | None = None
    newer_than: float | None = None
    request_id: str | None = None
    cursor: str | None = None
    limit: int = 50
    tag: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    sender: str | None = None
    """``tag``: messages sent with exactly this tag (through the ``message_meta`` tag
    index); ``metadata``: messages whose metadata has each of these key/value pairs
    (checked on the messages the window reads; not indexed); ``sender``: messages
    whose envelope sender is exactly this (checked on the window, not indexed)."""


@attrs.frozen
class MessageSummary:
    """One line of a listing; ``status`` is the overall status, ``held`` while on hold."""

    id: str
    client: str
    sender: str
    received_at: float
    size: int
    status: str
    recipients: tuple[str, ...]
    meta: MessageMeta = attrs.field(factory=MessageMeta)


@attrs.frozen
class Page:
    """Messages newest first; ``next_cursor`` is None when nothing older is left."""

    messages: tuple[MessageSummary, ...]
    next_cursor: str | None


@attrs.frozen
class AdminAction:
    """An operator's action on a message, kept with it: ``hold``, ``release``, ``retry``,
    ``delete`` or ``bounce``, by the admin certificate's name, with a reason."""

    at: float
    actor: str
    action: str
    reason: str | None


@attrs.frozen
class Attempt:
    """One delivery attempt of recipient ``idx``: its outcome and the reply."""

    idx: int
    at: float
    status: str
    reply: str | None
    remote_mta: str | None


@attrs.frozen
class MessageDetail:
    """Everything ``rail queue show`` prints. ``remote_mta`` maps a recipient index to
    the MTA of its last attempt; ``history`` is every attempt recorded (by recipient, then
    time; attempts made before schema 6 are not in it); ``head`` is the start of the
    stored message (:data:`HEAD_BYTES`), where its header section is."""

    status: MessageStatus
    held: bool
    head: bytes
    remote_mta: tuple[str | None, ...]
    actions: tuple[AdminAction, ...]
    history: tuple[Attempt, ...] = ()


@attrs.frozen
class RetryTarget:
    """One message (``message_id``), the pending mail of one recipient ``domain``, or,
    with neither, every pending message not on hold."""

    message_id: str | None = None
    domain: str | None = None


class IAdminQueue(Interface):
    """The queue as operators and the client listing see it. Every method returns a
    Deferred; the work runs on the store's writer thread, never on the reactor."""

    def list_messages(query: QueueQuery) -> Any:  # noqa: N805
        """Fires with a :class:`Page` for ``query``."""

    def show_message(message_id: str) -> Any:  # noqa: N805
        """Fires with the :class:`MessageDetail` of ``message_id``, or None."""

    def retry(target: RetryTarget, now: float, actor: str) -> Any:  # noqa: N805
        """Make the pending recipients of ``target`` (not on hold) due at ``now``; fires
        with how many recipients were made due."""

    def hold(message_id: str, now: float, actor: str, reason: str | None) -> Any:  # noqa: N805
        """Keep ``message_id`` from delivery until released; fires with an AdminOutcome."""

    def release(message_id: str, now: float, actor: str) -> Any:  # noqa: N805
        """Lift the hold; its pending recipients are due at ``now``. Fires with an
        AdminOutcome."""

    def delete(message_id: str, now: float, actor: str, reason: str) -> Any:  # noqa: N805
        """Make every pending recipient ``deleted`` with ``reason``; no DSN. Fires with
        an AdminOutcome."""

    def bounce(message_id: str, now: float, actor: str, reason: str | None, dsn: Any) -> Any:  # noqa: N805
        """Make every pending recipient ``bounced`` and queue the DSN ``dsn`` makes, as
        a remote 5xx would. Fires with an AdminOutcome."""
