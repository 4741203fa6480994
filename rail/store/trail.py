"""The events of one message, for the console's message trail.

Read on the store's read thread through the ``events_by_message`` index: a message has a
handful of events (one per recipient and outcome), and :data:`MAX_TRAIL_EVENTS` bounds
what one page shows whatever a message accumulated.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import attrs

__all__ = ["MAX_TRAIL_EVENTS", "EventRecord", "message_events"]

MAX_TRAIL_EVENTS = 200
"""The most events of one message the trail reads."""


@attrs.frozen
class EventRecord:
    """One stored event job of a message and how its delivery to the app went."""

    id: str
    type: str
    client: str
    recipient: str | None
    created_at: float
    status: str
    attempts: int
    last_reply: str | None
    details: dict[str, Any]


def message_events(connection: sqlite3.Connection, message_id: str) -> tuple[EventRecord, ...]:
    """The events stored for ``message_id``, oldest first (events of clients that did not
    subscribe were never stored, and retention purges delivered ones)."""
    rows = connection.execute(
        "SELECT id, type, client, recipient, created_at, status, attempts, last_reply, details"
        " FROM events WHERE message_id = ? ORDER BY created_at, id LIMIT ?",
        (message_id, MAX_TRAIL_EVENTS),
    ).fetchall()
    records = []
    for row in rows:
        try:
            details = json.loads(row[8])
        except ValueError:
            details = {}
        records.append(
            EventRecord(
                id=str(row[0]),
                type=str(row[1]),
                client=str(row[2]),
                recipient=row[3],
                created_at=float(row[4]),
                status=str(row[5]),
                attempts=int(row[6]),
                last_reply=row[7],
                details=details if isinstance(details, dict) else {},
            )
        )
    return tuple(records)
