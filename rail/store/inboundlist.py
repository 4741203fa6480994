"""Recent inbound mail and its webhook jobs, for the console's Inbound page, and making a
message's pending webhook jobs due now.

The listing reads the newest :data:`INBOUND_PAGE` inbound messages through the primary
key (ids are ULIDs: id order is arrival order) and their jobs through theirs; it never
reads message data, and costs the same whatever the spool holds.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from rail.store.db import Connection

__all__ = ["INBOUND_PAGE", "InboundJob", "InboundSummary", "recent_inbound", "retry_inbound"]

INBOUND_PAGE = 50
"""How many inbound messages one page lists."""


@attrs.frozen
class InboundJob:
    """One client's webhook job for an inbound message."""

    client: str
    url: str
    recipients: tuple[str, ...]
    status: str
    attempts: int
    last_reply: str | None
    next_attempt_at: float | None


@attrs.frozen
class InboundSummary:
    """An inbound message: envelope, subject, authentication results, its jobs."""

    id: str
    sender: str
    subject: str
    received_at: float
    peer: str
    tls: bool
    size: int
    authentication: dict[str, Any]
    jobs: tuple[InboundJob, ...]


def recent_inbound(
    connection: Connection, before: str | None = None, limit: int = INBOUND_PAGE
) -> tuple[InboundSummary, ...]:
    """The newest ``limit`` inbound messages older than the id ``before`` (None: the
    newest), newest first."""
    where, params = ("WHERE id < ?", [before]) if before is not None else ("", [])
    rows = connection.execute(
        "SELECT id, sender, subject, received_at, peer, tls, size, authentication"  # noqa: S608
        f" FROM inbound {where} ORDER BY id DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    found = []
    for row in rows:
        jobs = tuple(
            InboundJob(
                client=str(j[0]),
                url=str(j[1]),
                recipients=tuple(json.loads(j[2])),
                status=str(j[3]),
                attempts=int(j[4]),
                last_reply=j[5],
                next_attempt_at=j[6],
            )
            for j in connection.execute(
                "SELECT client, url, recipients, status, attempts, last_reply, next_attempt_at"
                " FROM webhooks WHERE message_id = ? ORDER BY client",
                (row[0],),
            )
        )
        try:
            authentication = json.loads(row[7])
        except ValueError:
            authentication = {}
        found.append(
            InboundSummary(
                id=str(row[0]),
                sender=str(row[1]),
                subject=str(row[2]),
                received_at=float(row[3]),
                peer=str(row[4]),
                tls=bool(row[5]),
                size=int(row[6]),
                authentication=authentication if isinstance(authentication, dict) else {},
                jobs=jobs,
            )
        )
    return tuple(found)


def retry_inbound(connection: Connection, message_id: str, now: float) -> int:
    """Make the pending (queued or deferred) webhook jobs of ``message_id`` due at
    ``now``; how many were. Runs on the writer thread, in its transaction."""
    cursor = connection.execute(
        "UPDATE webhooks SET next_attempt_at = ? WHERE message_id = ?"
        " AND status IN ('queued', 'deferred')",
        (now, message_id),
    )
    return int(cursor.rowcount)
