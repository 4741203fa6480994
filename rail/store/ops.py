"""The operations the store's writer thread runs, as values.

The store (:mod:`rail.store.queuestore`) makes one of these per call and puts it on the
writer's queue (:mod:`rail.store.writer`); the writer answers each with its ``token``.
Plain values: no engine, no Deferred.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import attrs

from rail.events.jobs import EventResult
from rail.inbound.model import InboundMessage, WebhookResult
from rail.store.db import Connection
from rail.store.deliveries import DSNBuilder
from rail.store.model import (
    IdempotencyKey,
    JobQueue,
    JobResult,
    NewMessage,
    Quarantined,
    QuarantineKind,
)

__all__ = [
    "AcceptManyOp",
    "AcceptOp",
    "AdminOp",
    "ClaimOp",
    "Claimed",
    "Deliver",
    "EventClaimOp",
    "EventRecordOp",
    "InboundAcceptOp",
    "LeaseOp",
    "Op",
    "Outcome",
    "PurgeOp",
    "QuarantineOp",
    "ReadOp",
    "RecordOp",
    "WebhookClaimOp",
    "WebhookRecordOp",
    "Write",
    "is_write",
]

Outcome = tuple[Any, object]
"""``(token, result)``: a result that is an exception means failure."""
Deliver = Callable[[list[Outcome]], None]


@attrs.frozen
class AcceptOp:
    """Make ``message`` durable; ``token`` comes back with the result."""

    message: NewMessage
    idempotency: IdempotencyKey | None
    token: Any


@attrs.frozen
class AcceptManyOp:
    """Make each of ``items`` durable in the same transaction (one fsync), each under its
    own savepoint: the result is the list of their results in order, where a refused
    item's is its QueueFullError or StoreUnavailableError."""

    items: tuple[tuple[NewMessage, IdempotencyKey | None], ...]
    token: Any


@attrs.frozen
class ReadOp:
    """Run ``read(connection)`` and answer its result (a database error becomes
    StoreUnavailableError): reads go to the writer only when no read connection can be
    opened (a database in exclusive locking mode, see :func:`rail.store.schema.open_writable`)."""

    read: Callable[[Connection], object]
    token: Any


@attrs.frozen
class ClaimOp:
    """Read up to ``limit`` due jobs (see :func:`rail.store.deliveries.claim_due`)."""

    now: float
    limit: int
    exclude: frozenset[tuple[str, str]]
    token: Any


@attrs.frozen
class RecordOp:
    """Record one delivery attempt; a DSN, if due, is made with ``dsn``."""

    result: JobResult
    dsn: DSNBuilder | None
    token: Any


@attrs.frozen
class InboundAcceptOp:
    """Spool an inbound message with its webhook jobs."""

    message: InboundMessage
    token: Any


@attrs.frozen
class WebhookClaimOp:
    """Read up to ``limit`` due webhook jobs."""

    now: float
    limit: int
    exclude: frozenset[tuple[str, str]]
    token: Any


@attrs.frozen
class WebhookRecordOp:
    """Record one webhook POST; a DSN, if due, is made with ``dsn``."""

    result: WebhookResult
    dsn: DSNBuilder | None
    token: Any


@attrs.frozen
class EventClaimOp:
    """Read up to ``limit`` due event jobs (see :func:`rail.store.events.claim_events`)."""

    now: float
    limit: int
    exclude: frozenset[str]
    token: Any


@attrs.frozen
class EventRecordOp:
    """Record one event POST; the result is whether the event was still pending."""

    result: EventResult
    token: Any


@attrs.frozen
class QuarantineOp:
    """Quarantine ``message_id`` of ``queue`` (see :meth:`IDeliveryQueue.quarantine`);
    the result is the :class:`Quarantined` record, or None if nothing was pending."""

    queue: Literal["outbound", "inbound", "events"]
    message_id: str
    kind: QuarantineKind
    reason: str
    now: float
    token: Any


@attrs.frozen
class LeaseOp:
    """Renew this node's leases on the jobs of ``queue`` whose ids (the first part of
    their keys) are ``keys`` (``renew``), or release the rows named by ``keys``
    (``release``); the result is None. Nothing to do without leases."""

    action: Literal["renew", "release"]
    queue: JobQueue
    keys: tuple[Any, ...]
    now: float
    token: Any


@attrs.frozen
class AdminOp:
    """Run ``work(connection)`` (:mod:`rail.store.admin`), which returns its answer and
    its change to the number of pending messages: inside the batch's transaction, under
    a savepoint of its own, when ``write``; else after the commit, as reads are."""

    work: Callable[[Connection], tuple[object, int]]
    write: bool
    token: Any
    message_id: str | None = None
    """The outbound message whose rows it changes, if one: locked with the batch's others
    before anything else (:func:`rail.store.jobends.lock_messages`)."""
    inbound_id: str | None = None
    """The same for an inbound message whose webhook jobs it changes."""


@attrs.frozen
class Claimed:
    """What a claim hands back: the jobs, and the messages it quarantined because their
    rows failed verification (already on disk)."""

    jobs: list[Any]
    quarantined: list[Quarantined]


@attrs.frozen
class PurgeOp:
    """One retention step (:func:`rail.store.purge.purge_step`), run in transactions of its
    own once the other operations of its batch are answered; the result is :class:`Purged`."""

    now: float
    body_before: float
    record_before: float
    limit: int
    vacuum_pages: int
    token: Any


Op = (
    AcceptOp
    | AcceptManyOp
    | ReadOp
    | ClaimOp
    | RecordOp
    | InboundAcceptOp
    | WebhookClaimOp
    | WebhookRecordOp
    | QuarantineOp
    | AdminOp
    | PurgeOp
    | EventClaimOp
    | EventRecordOp
    | LeaseOp
)
WRITES = (
    AcceptOp,
    AcceptManyOp,
    RecordOp,
    InboundAcceptOp,
    WebhookRecordOp,
    QuarantineOp,
    EventRecordOp,
    LeaseOp,
)
Write = (
    AcceptOp
    | AcceptManyOp
    | RecordOp
    | InboundAcceptOp
    | WebhookRecordOp
    | QuarantineOp
    | EventRecordOp
    | LeaseOp
)


def is_write(op: Op) -> bool:
    """Whether ``op`` changes the database (it then runs in the batch's transaction)."""
    return isinstance(op, WRITES) or (isinstance(op, AdminOp) and op.write)
