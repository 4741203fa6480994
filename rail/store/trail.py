"""The events of one message, for the console's message trail; the domains that defer
most among the recipients due soonest and the webhook backlog per client, for its
overview.

Read on the store's read thread through the ``events_by_message`` index: a message has a
handful of events (one per recipient and outcome), and :data:`MAX_TRAIL_EVENTS` bounds
what one page shows whatever a message accumulated.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from rail.store.db import Connection

__all__ = [
    "BACKLOG_SCAN",
    "DEFERRING_SCAN",
    "MAX_TRAIL_EVENTS",
    "Backlog",
    "DeferringDomain",
    "EventRecord",
    "deferring_domains",
    "message_events",
    "webhook_backlog",
]

BACKLOG_SCAN = 10_000
"""How many pending jobs of each kind :func:`webhook_backlog` counts at most."""

DEFERRING_SCAN = 2000
"""How many pending recipients (soonest due first) :func:`deferring_domains` looks at."""

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


def message_events(connection: Connection, message_id: str) -> tuple[EventRecord, ...]:
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


@attrs.frozen
class DeferringDomain:
    """A recipient domain with deferred recipients: how many were seen, and the reply of
    the most recently updated one."""

    domain: str
    deferred: int
    last_reply: str | None


def deferring_domains(
    connection: Connection, top: int = 10, scan: int = DEFERRING_SCAN
) -> tuple[DeferringDomain, ...]:
    """The ``top`` domains by deferred recipients among the ``scan`` pending recipients
    due soonest (through the partial index of pending recipients): a sample that costs
    the same whatever the queue holds, not a count over it."""
    rows = connection.execute(
        "SELECT address, status, last_reply, updated_at FROM recipients"
        " WHERE status IN ('queued', 'deferred') AND next_attempt_at IS NOT NULL"
        " ORDER BY next_attempt_at LIMIT ?",
        (scan,),
    ).fetchall()
    counts: dict[str, int] = {}
    latest: dict[str, tuple[float, str | None]] = {}
    for address, status, reply, updated_at in rows:
        if status != "deferred":
            continue
        domain = str(address).rpartition("@")[2].lower()
        counts[domain] = counts.get(domain, 0) + 1
        if domain not in latest or float(updated_at) >= latest[domain][0]:
            latest[domain] = (float(updated_at), reply)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
    return tuple(DeferringDomain(d, n, latest[d][1]) for d, n in ranked)


@attrs.frozen
class Backlog:
    """Pending (queued or deferred) jobs per client: event jobs and inbound webhooks;
    ``capped``: a kind had :data:`BACKLOG_SCAN` pending or more, so its counts are lower
    bounds."""

    events: dict[str, int]
    inbound: dict[str, int]
    capped: bool


def webhook_backlog(connection: Connection, scan: int = BACKLOG_SCAN) -> Backlog:
    """Per client, the pending event jobs and inbound webhook jobs, at most ``scan`` of
    each kind (soonest due, through their partial indexes of pending jobs)."""
    capped = False
    found = []
    for table in ("events", "webhooks"):
        rows = connection.execute(
            f"SELECT client, count(*) FROM (SELECT client FROM {table}"  # noqa: S608
            " WHERE status IN ('queued', 'deferred') AND next_attempt_at IS NOT NULL"
            " ORDER BY next_attempt_at LIMIT ?) AS due GROUP BY client ORDER BY client",
            (scan,),
        ).fetchall()
        counts = {str(client): int(n) for client, n in rows}
        capped = capped or sum(counts.values()) >= scan
        found.append(counts)
    return Backlog(found[0], found[1], capped)
