"""What the queue stores and answers: plain values shared by SMTP, the API and delivery.

Status vocabulary (RAIL.md §4): a recipient is ``queued`` (never tried), ``deferred``
(tried, will retry), ``sent`` or ``bounced``; or ``failed``: its message was quarantined
(its stored bytes failed verification, or preparing it raised or overran its budget), so
it is never tried again and never in the way of other mail; or ``deleted``: an operator
deleted its message (``rail queue delete``), the reason is its last reply; or
``suppressed``: it was on the client's suppression list when the message was accepted, so
it was never queued (:mod:`rail.store.sendcheck`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs
from zope.interface import Attribute, Interface

from rail.events.model import Event

__all__ = [
    "QUARANTINE_PREFIX",
    "Accepted",
    "BounceReport",
    "BouncedRecipient",
    "Conflict",
    "DeliveryJob",
    "DueRecipient",
    "IBatchAccept",
    "IDeliveryQueue",
    "ILeases",
    "IQueueStore",
    "IRetention",
    "IdempotencyKey",
    "JobResult",
    "MessageMeta",
    "MessageStatus",
    "NewMessage",
    "Purged",
    "QuarantineKind",
    "Quarantined",
    "QueueFullError",
    "QueueLeases",
    "RecipientStatus",
    "RecipientUpdate",
    "Replayed",
    "Stale",
    "StoreUnavailableError",
    "SuppressedRecipient",
    "overall_status",
]

Channel = Literal["smtp", "api"]
RecipientState = Literal["queued", "deferred", "sent", "bounced", "failed", "deleted", "suppressed"]
QuarantineKind = Literal["corrupt", "error", "timeout"]
"""Why a message was quarantined: its stored bytes failed verification (``corrupt``),
preparing it raised (``error``), or preparing it overran its budget (``timeout``)."""

QUARANTINE_PREFIX = "quarantined: "
"""How the ``last_reply`` of a quarantined recipient or webhook job starts."""


@attrs.frozen
class MessageMeta:
    """What an app attached to a message to find it again: its ``request_id``, a ``tag``
    and a small string map. Echoed in status answers and in every event of the message."""

    request_id: str | None = None
    tag: str | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict)

    def __bool__(self) -> bool:
        return self.request_id is not None or self.tag is not None or bool(self.metadata)


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
    meta: MessageMeta = MessageMeta()


@attrs.frozen
class IdempotencyKey:
    """An API client's ``request_id``: a second request with the same ``key`` and the same
    ``fingerprint`` replays the first answer; another fingerprint is a conflict."""

    key: str
    fingerprint: str


@attrs.frozen
class SuppressedRecipient:
    """A recipient of an accepted message that was on the client's suppression list, and
    the list entry's reason (``hard_bounce``, ``complaint``, ``manual``)."""

    address: str
    reason: str


@attrs.frozen
class Accepted:
    """The message and its recipient rows are on disk (fsynced). ``recipients`` counts
    every recipient accepted; ``suppressed`` are those of them not queued for delivery."""

    id: str
    recipients: int
    suppressed: tuple[SuppressedRecipient, ...] = ()


@attrs.frozen
class Replayed:
    """The idempotency key was seen before with the same payload: nothing new was queued.
    The first answer's values again."""

    id: str
    recipients: int
    suppressed: tuple[SuppressedRecipient, ...] = ()


@attrs.frozen
class Conflict:
    """The idempotency key was seen before with a different payload: nothing was queued."""

    id: str


class QueueFullError(Exception):
    """Free disk under the floor, or queue at capacity: retry later (452 4.3.1 / 503)."""


class StoreUnavailableError(Exception):
    """The store failed (I/O error, corrupt database): retry later (451 4.3.0 / 503)."""


@attrs.frozen
class Quarantined:
    """A message just taken out of delivery for good: its pending recipients (outbound)
    or webhook jobs (inbound) are now ``failed``, with ``last_reply`` set to
    :data:`QUARANTINE_PREFIX` + ``reason``. Reported once, when that is on disk."""

    queue: Literal["outbound", "inbound", "events"]
    message_id: str
    """For ``events``, the event's id."""
    kind: QuarantineKind
    reason: str


JobQueue = Literal["outbound", "inbound", "events"]


@attrs.frozen
class Stale:
    """What recording a result (or a quarantine) answers when this node no longer holds
    the job: its lease ended and another node took it (:mod:`rail.store.lease`). Nothing
    was written; the other node's own attempt decides the job."""

    queue: JobQueue
    id: str
    """The message's id (for ``events``, the event's)."""
    reason: str


@attrs.frozen
class RecipientStatus:
    address: str
    status: RecipientState
    attempts: int
    last_reply: str | None
    next_attempt_at: float | None
    updated_at: float
    reports: tuple[Any, ...] = ()
    """Bounces and complaints that came back later, after the recipient was ``sent``
    (:class:`rail.store.bouncereports.AsyncReport`); they do not change ``status``."""


@attrs.frozen
class MessageStatus:
    """Overall status: ``queued`` while no recipient was tried, ``deferred`` while any is
    pending after a failed try, ``sent`` when all were sent, ``failed`` when none is
    pending and the message was quarantined (``reason`` then says why), ``deleted`` when
    none is pending, none failed and an operator deleted it, ``bounced`` when none is
    pending, none failed or was deleted, and at least one bounced, ``suppressed`` when
    every recipient was suppressed (else suppressed ones count as done, like sent ones).
    ``meta`` is what the app attached (request id, tag, metadata)."""

    id: str
    client: str
    sender: str
    channel: Channel
    size: int
    received_at: float
    status: RecipientState
    recipients: tuple[RecipientStatus, ...]
    reason: str | None = None
    body_purged_at: float | None = None
    """When retention dropped the message's bytes (``storage.retention.body``), or None."""
    meta: MessageMeta = MessageMeta()


@attrs.frozen
class DueRecipient:
    """A recipient whose next attempt is due; ``idx`` is its position in the message."""

    idx: int
    address: str
    attempts: int
    last_reply: str | None


@attrs.frozen
class DeliveryJob:
    """The due recipients of one message in one recipient domain: what one SMTP
    transaction to that domain's MX delivers."""

    message_id: str
    domain: str
    client: str
    sender: str
    received_at: float
    smtputf8: bool
    eight_bit: bool
    recipients: tuple[DueRecipient, ...]
    data: bytes

    @property
    def key(self) -> tuple[str, str]:
        """Identifies the job among those in flight."""
        return (self.message_id, self.domain)


@attrs.frozen
class RecipientUpdate:
    """The outcome of one attempt for one recipient. ``next_attempt_at`` is set for
    ``deferred`` only; ``reply`` is the remote (or Rail's) reply as text."""

    idx: int
    status: Literal["sent", "deferred", "bounced"]
    reply: str
    remote_mta: str | None = None
    next_attempt_at: float | None = None
    expired_after: str | None = None
    """Set when this attempt failed at ``max_age``: the attempt's own reply (``reply`` is
    then the expiry bounce that quotes it). Events tell an expiry from a bounce by it."""


@attrs.frozen
class JobResult:
    """What one delivery attempt of a :class:`DeliveryJob` decided, recorded at once.

    ``mx``, ``address`` and ``tls`` say where the attempt went (the MX host, the IP
    address connected to, the TLS version or None in plaintext); None for what was never
    reached. The store puts them in the attempt's events."""

    message_id: str
    attempted_at: float
    updates: tuple[RecipientUpdate, ...]
    mx: str | None = None
    address: str | None = None
    tls: str | None = None
    events: tuple[Event, ...] = ()
    """Events the attempt makes, stored (for the clients that subscribed) in the same
    transaction as the result: a sandboxed client's ``message.delivered``."""


@attrs.frozen
class BouncedRecipient:
    address: str
    reply: str
    remote_mta: str | None
    updated_at: float


@attrs.frozen
class BounceReport:
    """A message that has just become final with bounced recipients: the material of its
    delivery status notification. ``data`` is the stored message (its header section is
    quoted in the DSN)."""

    message_id: str
    client: str
    sender: str
    received_at: float
    data: bytes
    bounced: tuple[BouncedRecipient, ...]


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


class IBatchAccept(Interface):
    """A store that accepts many messages in one transaction (``POST /api/v1/send/batch``)."""

    def accept_many(items: Any) -> Any:  # noqa: N805
        """Make each ``(NewMessage, IdempotencyKey | None)`` of ``items`` durable, all in
        one transaction (one fsync); fires with the list of their results in order:
        Accepted, Replayed or Conflict as :meth:`IQueueStore.accept` answers, or the
        QueueFullError or StoreUnavailableError that refused that item alone. Fails with
        StoreUnavailableError when the transaction as a whole failed (nothing stored)."""


class IDeliveryQueue(Interface):
    """The queue as the delivery scheduler sees it. Every method returns a Deferred."""

    def claim(now: float, limit: int, exclude: frozenset[tuple[str, str]]) -> Any:  # noqa: N805
        """Fires with up to ``limit`` :class:`DeliveryJob` due at ``now``, oldest due
        first, none whose :attr:`DeliveryJob.key` is in ``exclude``."""

    def record(result: JobResult, dsn: Any = None) -> Any:  # noqa: N805
        """Make ``result`` durable; when it leaves its message with no pending recipient
        and some bounced, ``dsn(BounceReport)`` is called and the NewMessage it returns is
        queued in the same transaction. Fires with that NewMessage or None; or, with
        leases (:class:`ILeases`), with :class:`Stale` when another node holds the job
        now (nothing was written)."""

    def recipient_counts() -> Any:
        """Fires with the number of recipients in each status."""

    def oldest_pending_received_at() -> Any:
        """Fires with when the oldest message with a ``queued`` or ``deferred`` recipient
        was received, or None: what keeps an older DKIM key published."""

    def observe_accepted(callback: Any) -> None:  # noqa: N805
        """Call ``callback()`` (on the reactor) whenever new mail becomes due at once:
        after an accept, or after a DSN was queued."""

    def quarantine(message_id: str, kind: QuarantineKind, reason: str, now: float) -> Any:  # noqa: N805
        """Make every pending recipient of ``message_id`` ``failed`` for good (no DSN: the
        message's bytes are what cannot be handled); fires with True once that is on
        disk, False if none was pending (nothing changes, nothing is reported)."""

    def observe_quarantined(callback: Any) -> None:  # noqa: N805
        """Call ``callback(Quarantined)`` on the reactor once per message quarantined,
        outbound or inbound, whether by :meth:`quarantine` or because a claim found its
        stored row unreadable or not matching its ``sha256`` (such a row is never
        handed out, and never stops the claim of the others)."""


class ILeases(Interface):
    """The leases of a queue shared by several nodes (:mod:`rail.store.lease`), as the job
    runner (:mod:`rail.jobs.runner`) keeps them. Every method returns a Deferred."""

    lease = Attribute(
        "Seconds a claim holds its jobs unless renewed, or None: claims take no leases"
        " (one process owns the queue), and nothing is to be renewed or released."
    )

    def renew_leases(queue: JobQueue, keys: Any, now: float) -> Any:  # noqa: N805
        """Extend, to ``now`` + :attr:`lease`, this node's leases on the jobs of ``queue``
        whose keys (:attr:`DeliveryJob.key`, :attr:`WebhookJob.key`, :attr:`EventJob.key`)
        are ``keys``; jobs another node took meanwhile are not touched."""

    def release_leases(queue: JobQueue, jobs: Any) -> Any:  # noqa: N805
        """Give up this node's leases on ``jobs`` of ``queue`` (not started, or cut, when
        stopping), so any node may claim them at once."""

    def observe_stale(callback: Any) -> None:  # noqa: N805
        """Call ``callback(Stale)`` on the reactor once per result (or quarantine) that
        was not written because another node holds its job now."""


@attrs.frozen
class QueueLeases:
    """``store``'s leases on the jobs of one ``queue``: what a job runner renews and
    releases (:class:`rail.jobs.runner.JobLeases`)."""

    store: Any
    queue: JobQueue

    @classmethod
    def of(cls, store: object, queue: JobQueue) -> QueueLeases | None:
        """The leases of ``store`` on ``queue``, or None if it keeps none."""
        return cls(store, queue) if ILeases.providedBy(store) else None

    @property
    def lease(self) -> float | None:
        return self.store.lease

    def renew(self, keys: list[Any], now: float) -> Any:
        return self.store.renew_leases(self.queue, keys, now)

    def release(self, jobs: list[Any]) -> Any:
        return self.store.release_leases(self.queue, jobs)


@attrs.frozen
class Purged:
    """What one purge step did: message bodies dropped, message records deleted,
    idempotency keys deleted, pages given back to the file system; ``more`` is true when
    the step stopped at its limits with work left."""

    bodies: int = 0
    records: int = 0
    keys: int = 0
    pages: int = 0
    more: bool = False
    events: int = 0
    """Final event jobs deleted."""


class IRetention(Interface):
    """Retention (docs/delivery.md, "Retention"): a store forgets finished messages in
    small steps. A message is *finished* once nothing more will be done with it: every
    recipient ``sent``, ``bounced``, ``failed`` or ``deleted`` (outbound), every webhook job
    ``delivered`` or ``failed`` (inbound)."""

    def purge(now: float, body_before: float, record_before: float, limit: int) -> Any:  # noqa: N805
        """One step: delete up to ``limit`` messages (outbound and inbound, with their
        recipients or jobs) finished before ``record_before``; drop the bytes of up to
        ``limit`` finished before ``body_before`` (their status stays, with
        ``body_purged_at`` = ``now``); delete up to ``limit`` idempotency keys older than
        a day before ``now``; give freed space back. Fires with :class:`Purged`."""

    def expired(message_id: str) -> bool:  # noqa: N805
        """Whether ``message_id``, not found, may have been purged: its ULID time is before
        the ``record_before`` of the last purge. Neither the store nor anyone can tell a
        purged message from an id that never existed without keeping data."""


def overall_status(states: tuple[RecipientState, ...]) -> RecipientState:
    """The message-level status from its recipients' states, by the rule in
    :class:`MessageStatus`; one function so every store and the API agree."""
    if any(state == "deferred" for state in states):
        return "deferred"
    if any(state == "queued" for state in states):
        return "queued"
    if any(state == "failed" for state in states):
        return "failed"
    if any(state == "deleted" for state in states):
        return "deleted"
    if any(state == "bounced" for state in states):
        return "bounced"
    if states and all(state == "suppressed" for state in states):
        return "suppressed"
    return "sent"
