"""The send-time suppression check: recipients on the client's list are not queued.

When a message is accepted (:mod:`rail.store.writer`, inside the acceptance's own
transaction), each recipient is looked up in the client's suppression list
(:func:`rail.store.suppressions.suppressed`, one primary-key look-up per recipient). A
suppressed recipient gets no row in ``recipients`` (so no claim, count, DSN or retry ever
sees it) but one in ``suppressed_recipients``, with its position in the message, the list
entry's reason and the time; and a ``message.suppressed`` event is queued in the same
transaction. Status answers merge both tables in recipient order, the suppressed ones with
status ``suppressed``.

Why a table of its own rather than a ``suppressed`` value of ``recipients.status``:
SQLite can only widen that CHECK constraint by copying the recipients table (as schema 6
did), which takes minutes on a large queue at start-up and would be one more copy to
reconcile with the other schema steps of this release; a new table is an additive step.
Nothing on the delivery side has to learn a new status either. A message whose
recipients are all suppressed has no pending recipient: it is recorded as finished for
retention at once, and its ``suppressed_recipients`` rows go with it (ON DELETE CASCADE).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from rail.events.model import Event
from rail.store.db import Connection
from rail.store.model import NewMessage, RecipientStatus, SuppressedRecipient
from rail.store.suppressions import Known, Suppression, suppressed

__all__ = [
    "SEND_CHECK_SCHEMA",
    "find_suppressed",
    "insert_suppressed",
    "merged",
    "read_suppressed",
    "replayed_suppressed",
    "suppressed_answer",
    "suppressed_event",
    "suppressed_row",
]

# Schema 10. Not counted in the tally (rail.store.purge): /stats and /metrics count
# recipients that delivery handles.
SEND_CHECK_SCHEMA = """
CREATE TABLE suppressed_recipients (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (message_id, idx)
) WITHOUT ROWID;
"""


def _rfc3339(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def find_suppressed(
    connection: Connection, message: NewMessage, known: Known | None = None
) -> dict[int, Suppression]:
    """The recipients of ``message`` on its client's list, by their index in the message
    (from ``known`` when it was looked up ahead, :func:`rail.store.suppressions.look_up`)."""
    found = suppressed(connection, message.client, message.recipients, known)
    return {
        index: found[address]
        for index, address in enumerate(message.recipients)
        if address in found
    }


def suppressed_event(message: NewMessage, address: str, entry: Suppression) -> Event:
    """The ``message.suppressed`` event of one recipient (details per docs/events.md)."""
    return Event(
        type="message.suppressed",
        client=message.client,
        message_id=message.id,
        recipient=address,
        details={
            "reason": entry.reason,
            "suppressed_at": _rfc3339(entry.created_at),
            "source_message_id": entry.message_id,
            "source": entry.source,
        },
    )


def insert_suppressed(
    connection: Connection, message: NewMessage, found: Mapping[int, Suppression]
) -> None:
    """Record the suppressed recipients of ``message`` (in the caller's transaction)."""
    connection.executemany(
        "INSERT INTO suppressed_recipients (message_id, idx, address, reason, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        [
            (message.id, index, message.recipients[index], entry.reason, message.received_at)
            for index, entry in sorted(found.items())
        ],
    )


def suppressed_answer(
    found: Mapping[int, Suppression], message: NewMessage
) -> tuple[SuppressedRecipient, ...]:
    """What the acceptance answers about them, in recipient order."""
    return tuple(
        SuppressedRecipient(message.recipients[index], entry.reason)
        for index, entry in sorted(found.items())
    )


def replayed_suppressed(connection: Connection, message_id: str) -> tuple[SuppressedRecipient, ...]:
    """What the first acceptance of ``message_id`` answered about its suppressed
    recipients, for a replay of its request."""
    return tuple(
        SuppressedRecipient(address, reason)
        for address, reason in connection.execute(
            "SELECT address, reason FROM suppressed_recipients WHERE message_id = ? ORDER BY idx",
            (message_id,),
        )
    )


def suppressed_row(address: str, reason: str, when: float) -> RecipientStatus:
    """A suppressed recipient as status answers show it: never attempted, final, its last
    reply saying why."""
    return RecipientStatus(
        address=address,
        status="suppressed",
        attempts=0,
        last_reply=f"suppressed: {reason}",
        next_attempt_at=None,
        updated_at=when,
    )


def read_suppressed(connection: Connection, message_id: str) -> list[tuple[int, RecipientStatus]]:
    """The suppressed recipients of ``message_id`` as status rows, with their index."""
    return [
        (int(index), suppressed_row(address, reason, created_at))
        for index, address, reason, created_at in connection.execute(
            "SELECT idx, address, reason, created_at FROM suppressed_recipients"
            " WHERE message_id = ? ORDER BY idx",
            (message_id,),
        )
    ]


def merged(
    queued: list[tuple[int, RecipientStatus]], suppressed_rows: list[tuple[int, RecipientStatus]]
) -> tuple[RecipientStatus, ...]:
    """Both kinds of recipient row in message order."""
    return tuple(row for _, row in sorted([*queued, *suppressed_rows], key=lambda pair: pair[0]))
