"""Event jobs in the SQLite queue: one row per event, POSTed to the app like a webhook.

Rows are inserted by whoever records what happened, inside that writer transaction
(:func:`insert_events`). Each row is a durable job with the webhook jobs' states: found
through a partial index over the pending ones in ``next_attempt_at`` order.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from rail.events.model import Event
from rail.events.subscriptions import Subscriptions
from rail.store.ids import new_message_id

__all__ = ["EVENTS_SCHEMA", "insert_events"]

EVENTS_SCHEMA = """
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    type TEXT NOT NULL,
    message_id TEXT NOT NULL,
    recipient TEXT,
    sandbox INTEGER NOT NULL,
    created_at REAL NOT NULL,
    details TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'deferred', 'delivered', 'failed')),
    attempts INTEGER NOT NULL,
    next_attempt_at REAL,
    last_reply TEXT,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX events_pending ON events (next_attempt_at)
    WHERE status IN ('queued', 'deferred');
CREATE INDEX events_by_message ON events (message_id);
"""


def insert_events(
    connection: sqlite3.Connection,
    events: Sequence[Event],
    now: float,
    subscriptions: Subscriptions,
) -> list[str]:
    """Queue those of ``events`` some client subscribed to (in the caller's transaction), due
    at once; the new ids, in order.

    The id is a ULID: it is the event's ``id`` in the payload and its ``webhook-id``.
    """
    events = subscriptions.wanted(events)
    ids = [new_message_id(now) for _ in events]
    connection.executemany(
        "INSERT INTO events (id, client, type, message_id, recipient, sandbox, created_at,"
        " details, status, attempts, next_attempt_at, last_reply, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, NULL, ?)",
        [
            (
                event_id,
                event.client,
                event.type,
                event.message_id,
                event.recipient,
                int(event.sandbox),
                now,
                json.dumps(dict(event.details), separators=(",", ":"), sort_keys=True),
                now,
                now,
            )
            for event_id, event in zip(ids, events, strict=True)
        ],
    )
    return ids
