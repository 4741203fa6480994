"""Event jobs in the SQLite queue: one row per event, POSTed to the app like a webhook.

Rows are inserted by whoever records what happened, inside that writer transaction
(:func:`insert_events`). Each row is a durable job with the webhook jobs' states: found
through a partial index over the pending ones in ``next_attempt_at`` order
(:func:`claim_events`, which also reads the message's ``request_id``, ``tag`` and metadata),
its POSTs recorded by :func:`record_event`. A row that cannot be read as stored is
quarantined (:func:`quarantine_event`): ``failed`` for good, never POSTed. Final rows are
deleted by retention after ``storage.retention.record`` (:func:`purge_events`, through a
partial index over them), and triggers keep their number per status in ``tally`` (queue
``events``) for ``/stats`` and ``/metrics``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from rail.events.jobs import EventJob, EventResult
from rail.events.model import EVENT_TYPES, Event
from rail.events.subscriptions import Subscriptions
from rail.store.db import Connection, dialect_of
from rail.store.ids import new_message_id
from rail.store.integrity import UnreadableRowError, number, text
from rail.store.lease import Lease, LeaseLostError, claimable, for_update, still_held, take
from rail.store.messagemeta import read_meta
from rail.store.model import QUARANTINE_PREFIX

__all__ = [
    "EVENTS_SCHEMA",
    "EVENT_JOBS_SCHEMA",
    "claim_events",
    "event_counts",
    "insert_events",
    "inserted",
    "purge_events",
    "quarantine_event",
    "record_event",
]

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
    connection: Connection,
    events: Sequence[Event],
    now: float,
    subscriptions: Subscriptions,
) -> list[str]:
    """Queue those of ``events`` some client subscribed to (in the caller's transaction), due
    at once; the new ids, in order.

    The id is a ULID: it is the event's ``id`` in the payload and its ``webhook-id``.
    """
    events = subscriptions.wanted(events)
    if not events:
        return []
    ids = [new_message_id(now) for _ in events]
    _inserted[0] += len(ids)
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


# Schema version 9: final events are found for retention through a partial index, and
# triggers keep the count per status in ``tally`` (filled once from what is stored).
EVENT_JOBS_SCHEMA = """
CREATE INDEX events_final ON events (updated_at) WHERE status IN ('delivered', 'failed');
CREATE TRIGGER events_tally_insert AFTER INSERT ON events BEGIN
    INSERT INTO tally (queue, status, n) VALUES ('events', NEW.status, 1)
        ON CONFLICT (queue, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER events_tally_delete AFTER DELETE ON events BEGIN
    UPDATE tally SET n = n - 1 WHERE queue = 'events' AND status = OLD.status;
END;
CREATE TRIGGER events_tally_update AFTER UPDATE OF status ON events
    WHEN OLD.status IS NOT NEW.status BEGIN
    UPDATE tally SET n = n - 1 WHERE queue = 'events' AND status = OLD.status;
    INSERT INTO tally (queue, status, n) VALUES ('events', NEW.status, 1)
        ON CONFLICT (queue, status) DO UPDATE SET n = n + 1;
END;
INSERT OR REPLACE INTO tally (queue, status, n)
    SELECT 'events', status, count(*) FROM events GROUP BY status;
"""

_inserted = [0]


def inserted() -> int:
    """Events queued by this process so far: the store compares it across a batch of the
    writer to wake the event dispatcher at once rather than at its next poll."""
    return _inserted[0]


def claim_events(
    connection: Connection,
    now: float,
    limit: int,
    exclude: Collection[str],
    lease: Lease | None = None,
) -> tuple[list[EventJob], dict[str, str]]:
    """Up to ``limit`` events due at ``now``, oldest due first, skipping ``exclude``, each
    with its message's meta; and the events that cannot be POSTed as stored, with the
    reason. Those give no job: the caller quarantines them. With a ``lease``, as
    :func:`rail.store.deliveries.claim_due`: only events no other node holds, taken under it."""
    free, params = claimable(lease)
    b = dialect_of(connection).as_bytes.format
    rows = connection.execute(
        f"SELECT id, {b('client')}, {b('type')}, {b('message_id')},"  # noqa: S608
        f" {b('recipient')}, sandbox, created_at, {b('details')}, attempts"
        " FROM events WHERE status IN ('queued', 'deferred') AND next_attempt_at <= ?"
        + free
        + " ORDER BY next_attempt_at LIMIT ?"
        + for_update(connection, lease),
        (now, *params, limit + len(exclude)),
    ).fetchall()
    read: list[tuple[Any, ...]] = []
    bad: dict[str, str] = {}
    for event_id, client, kind, message_id, recipient, sandbox, created, details, tries in rows:
        if len(read) >= limit:
            break
        if event_id in exclude:
            continue
        try:
            event_type = text(kind, "event type")
            if event_type not in EVENT_TYPES:
                raise UnreadableRowError(f"unknown event type {event_type!r}")
            try:
                document = json.loads(text(details, "event details"))
            except ValueError:
                raise UnreadableRowError("stored event details are not JSON") from None
            if not isinstance(document, dict):
                raise UnreadableRowError("stored event details are not a JSON object")
            read.append(
                (
                    event_id,
                    text(client, "event client"),
                    event_type,
                    text(message_id, "event message_id"),
                    None if recipient is None else text(recipient, "event recipient"),
                    bool(sandbox),
                    number(created, "event created_at"),
                    document,
                    int(number(tries, "event attempts")),
                )
            )
        except UnreadableRowError as error:
            bad[event_id] = str(error)
    metas = read_meta(connection, [row[3] for row in read]) if read else {}
    jobs = []
    for (
        event_id,
        client,
        event_type,
        message_id,
        recipient,
        sandbox,
        created,
        document,
        tries,
    ) in read:
        meta = metas.get(message_id)
        jobs.append(
            EventJob(
                id=event_id,
                client=client,
                type=event_type,
                message_id=message_id,
                recipient=recipient,
                sandbox=sandbox,
                created_at=created,
                details=document,
                attempts=tries,
                request_id=meta.request_id if meta is not None else None,
                tag=meta.tag if meta is not None else None,
                metadata=meta.metadata if meta is not None else {},
            )
        )
    if lease is not None:
        take(connection, "events", ("id",), [(job.id,) for job in jobs], lease)
    return jobs, bad


def record_event(connection: Connection, result: EventResult, node: str | None = None) -> bool:
    """Record one POST's outcome; whether the event was still pending (a late duplicate
    result cannot undo ``delivered``). Recording ends the event's lease; with leases
    (``node``), an event another node holds now raises :class:`LeaseLostError` before
    anything is written."""
    still_held(connection, "events", ("id",), [(result.event_id,)], node)
    updated = connection.execute(
        "UPDATE events SET status = ?, attempts = attempts + 1, next_attempt_at = ?,"
        " last_reply = ?, updated_at = ?, claimed_by = NULL, lease_until = ?"
        " WHERE id = ? AND status IN ('queued', 'deferred')",
        (
            result.status,
            result.next_attempt_at if result.status == "deferred" else None,
            result.reply,
            result.attempted_at,
            result.attempted_at,
            result.event_id,
        ),
    ).rowcount
    return bool(updated)


def quarantine_event(
    connection: Connection,
    event_id: str,
    reason: str,
    now: float,
    node: str | None = None,
) -> bool:
    """Make event ``event_id`` ``failed`` with ``reason`` if it is pending; whether it
    was. No attempt is counted. With leases (``node``), an event another node holds is
    left to it: :class:`LeaseLostError`."""
    if node is not None:
        row = connection.execute(
            "SELECT claimed_by, lease_until FROM events"
            " WHERE id = ? AND status IN ('queued', 'deferred')",
            (event_id,),
        ).fetchone()
        if row is not None and row[0] not in (None, node) and row[1] >= now:
            raise LeaseLostError(f"event {event_id} is held by another node")
    updated = connection.execute(
        "UPDATE events SET status = 'failed', last_reply = ?, next_attempt_at = NULL,"
        " updated_at = ?, claimed_by = NULL, lease_until = ?"
        " WHERE id = ? AND status IN ('queued', 'deferred')",
        (QUARANTINE_PREFIX + reason, now, now, event_id),
    ).rowcount
    return bool(updated)


def purge_events(connection: Connection, before: float, limit: int) -> int:
    """Delete up to ``limit`` events that became final before ``before`` (in the caller's
    transaction); how many."""
    return connection.execute(
        "DELETE FROM events WHERE id IN (SELECT id FROM events"
        " WHERE status IN ('delivered', 'failed') AND updated_at < ?"
        " ORDER BY updated_at LIMIT ?)",
        (before, limit),
    ).rowcount


def event_counts(connection: Connection) -> dict[str, int]:
    """Events by status, every status present, from the ``tally`` the triggers keep."""
    counts = dict.fromkeys(("queued", "deferred", "delivered", "failed"), 0)
    for status, count in connection.execute(
        "SELECT status, sum(n) FROM tally WHERE queue = 'events' GROUP BY status"
    ):
        counts[status] = int(count)
    return counts
