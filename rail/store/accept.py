"""Acceptance: what the writer does, inside its batch transaction, to make mail durable.

An outbound message is checked against the idempotency table (a replay answers the first
acceptance; a different payload under the same key is a conflict), its recipients
against the client's suppression list, then against the capacity limits; it is stored
with its recipients, its ``message.accepted`` event, its suppressed recipients and their
events, and its idempotency row, all in the caller's transaction (under a savepoint of
the writer's, so one refused message fails only its caller). An inbound message is
spooled with its webhook jobs and the forwarded copies it makes.

Both engines run this SQL; the writer (:mod:`rail.store.writer`) owns the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from rail.events.subscriptions import Subscriptions
from rail.inbound.model import InboundMessage
from rail.store.db import Connection
from rail.store.deliveries import insert_message
from rail.store.emit import accepted_events
from rail.store.events import insert_events
from rail.store.inbound import insert_inbound
from rail.store.lease import Lease
from rail.store.model import (
    Accepted,
    Conflict,
    IdempotencyKey,
    NewMessage,
    QueueFullError,
    Replayed,
)
from rail.store.purge import mark_finished
from rail.store.sendcheck import (
    find_suppressed,
    insert_suppressed,
    replayed_suppressed,
    suppressed_answer,
    suppressed_event,
)
from rail.store.suppressions import Known, look_up

__all__ = ["IDEMPOTENCY_TTL", "Budget", "accept_message", "look_ahead", "spool_inbound"]

# Idempotency rows live at least this long, in ``received_at`` seconds (request_id: 24 h);
# older ones are deleted by retention's purge steps.
IDEMPOTENCY_TTL = 24 * 60 * 60.0


@attrs.define
class Budget:
    """The capacity limits of one batch, and what the batch adds to them so far."""

    free_bytes: int
    """Free space where the database lives, measured before the batch (SQLite)."""
    min_free_bytes: int
    pending: int
    """Messages waiting for delivery before the batch: what ``max_queued`` limits."""
    max_queued: int
    messages: int = 0
    bytes: int = 0
    known: Known | None = None
    """The batch's suppression look-ups made ahead (:func:`look_ahead`), while nothing in
    the batch has changed the list since."""

    def room(self, size: int) -> QueueFullError | None:
        """Why ``size`` more bytes may not be stored, or None."""
        if self.free_bytes - self.bytes - size < self.min_free_bytes:
            return QueueFullError("free disk space under the floor")
        return None


def look_ahead(connection: Connection, messages: Sequence[NewMessage]) -> Known | None:
    """The suppression entries of every recipient of ``messages``, in one statement (per
    few hundred recipients) rather than one per message; None for fewer than two messages."""
    if len(messages) < 2:
        return None
    return look_up(connection, [(m.client, r) for m in messages for r in m.recipients])


def accept_message(
    connection: Connection,
    message: NewMessage,
    idempotency: IdempotencyKey | None,
    budget: Budget,
    subscriptions: Subscriptions,
    sandboxed: Callable[[str], bool],
) -> Accepted | Replayed | Conflict:
    """Store ``message`` (or answer its replay or conflict); raises QueueFullError when
    the limits refuse it."""
    if idempotency is not None:
        row = connection.execute(
            "SELECT fingerprint, message_id, recipients, created_at FROM idempotency"
            " WHERE client = ? AND key = ?",
            (message.client, idempotency.key),
        ).fetchone()
        if row is not None:
            fingerprint, message_id, recipients, created_at = row
            if created_at >= message.received_at - IDEMPOTENCY_TTL:
                if fingerprint == idempotency.fingerprint:
                    return Replayed(
                        message_id, recipients, replayed_suppressed(connection, message_id)
                    )
                return Conflict(message_id)
            connection.execute(
                "DELETE FROM idempotency WHERE client = ? AND key = ?",
                (message.client, idempotency.key),
            )
    size = len(message.data)
    found = find_suppressed(connection, message, budget.known)
    # A message whose recipients are all suppressed adds nothing to deliver.
    queues = len(found) < len(message.recipients)
    if queues and budget.pending + budget.messages >= budget.max_queued:
        raise QueueFullError("queue at capacity")
    full = budget.room(size)
    if full is not None:
        raise full
    insert_message(connection, message, skip=found)
    accepted_events(
        connection,
        message,
        subscriptions,
        sandboxed,
        queued=len(message.recipients) - len(found),
    )
    if found:
        insert_suppressed(connection, message, found)
        events = [
            suppressed_event(message, message.recipients[index], entry)
            for index, entry in sorted(found.items())
        ]
        insert_events(connection, events, message.received_at, subscriptions)
        if len(found) == len(message.recipients):
            # Nothing to deliver: final at once, for retention too.
            mark_finished(connection, "outbound", message.id, message.received_at)
    if idempotency is not None:
        connection.execute(
            "INSERT INTO idempotency (client, key, fingerprint, message_id, recipients,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                message.client,
                idempotency.key,
                idempotency.fingerprint,
                message.id,
                len(message.recipients),
                message.received_at,
            ),
        )
    budget.messages += queues
    budget.bytes += size
    return Accepted(message.id, len(message.recipients), suppressed_answer(found, message))


def spool_inbound(
    connection: Connection, message: InboundMessage, budget: Budget, lease: Lease | None = None
) -> Accepted:
    """Spool ``message`` with its webhook jobs and forwarded copies; raises QueueFullError
    under the free-space floor. Only that floor applies to inbound mail: ``max_queued``
    bounds outbound mail waiting on remote hosts. With a ``lease`` (a shared store), the
    webhook jobs are held by this node from the start (its runner is handed them)."""
    full = budget.room(len(message.data))
    if full is not None:
        raise full
    insert_inbound(connection, message, lease)
    for forward in message.forwards:  # forwarding: queued with the message
        insert_message(connection, forward)
        budget.messages += 1
        budget.bytes += len(forward.data)
    budget.bytes += len(message.data)
    return Accepted(message.id, len(message.targets))
