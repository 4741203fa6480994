"""Ending a message's jobs: the lock on its row, and quarantine, for both queues.

An outbound message's jobs are its ``recipients``, an inbound message's its ``webhooks``.
Whoever ends a message's last pending job finishes the message (a ``finished`` row, which
retention reads). On PostgreSQL two nodes may end a message's last two jobs at once; each
locks the message's row first (:attr:`rail.store.db.Dialect.lock_message`), so the second
waits for the first, sees its change, and finishes the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rail.store.db import Connection, dialect_of
from rail.store.lease import LeaseLostError
from rail.store.model import QUARANTINE_PREFIX
from rail.store.purge import Queue, mark_finished

__all__ = ["jobs_pending", "lock_message", "lock_messages", "quarantine_jobs"]

# The table of a queue's messages, of its jobs, and what its jobs are called.
_TABLES: dict[str, tuple[str, str, str]] = {
    "outbound": ("messages", "recipients", "recipients"),
    "inbound": ("inbound", "webhooks", "webhooks"),
}


def lock_message(connection: Connection, queue: Queue, message_id: str) -> None:
    """Lock ``message_id``'s row before its jobs change, where the dialect locks."""
    lock = dialect_of(connection).lock_message
    if lock:
        table = _TABLES[queue][0]
        connection.execute(f"SELECT 1 FROM {table} m WHERE m.id = ?" + lock, (message_id,))  # noqa: S608


def lock_messages(
    connection: Connection, outbound: Sequence[str], inbound: Sequence[str] = ()
) -> None:
    """Lock the rows of the ``outbound`` messages, then of the ``inbound`` ones, each in id
    order, first thing in a transaction that records results or quarantines for them.
    Each of those locks its message's row when it comes to it, in the order the batch
    holds them: two nodes whose batches name two messages in opposite orders would each
    hold one and wait for the other (a deadlock, which the server ends by failing one
    batch). Taken up front in one order, the second batch waits for the first before it
    holds anything."""
    lock = dialect_of(connection).lock_message
    if not lock:
        return
    for queue, ids in (("outbound", outbound), ("inbound", inbound)):
        if ids:
            table = _TABLES[queue][0]
            connection.execute(
                f"SELECT m.id FROM {table} m WHERE m.id = ANY(?) ORDER BY m.id" + lock,  # noqa: S608
                (sorted(set(ids)),),
            )


def jobs_pending(connection: Connection, queue: Queue, message_id: str) -> bool:
    """Whether a job of ``message_id`` is still queued or deferred."""
    jobs = _TABLES[queue][1]
    row = connection.execute(
        f"SELECT 1 FROM {jobs} WHERE message_id = ?"  # noqa: S608  (a constant table name)
        " AND status IN ('queued', 'deferred') LIMIT 1",
        (message_id,),
    ).fetchone()
    return row is not None


def quarantine_jobs(
    connection: Connection,
    queue: Queue,
    message_id: str,
    reason: str,
    now: float,
    node: str | None = None,
) -> list[Any]:
    """Make every pending job of ``message_id`` ``failed`` with ``reason``; the jobs that
    were pending (recipients' ``idx``, webhook jobs' ``client``), none if none was. No
    attempt is counted and no DSN is made.

    With leases (``node``: this node), jobs another node holds are left to it (it finds
    the same fault and quarantines them in turn); if only such jobs are pending,
    :class:`LeaseLostError`."""
    _, jobs, called = _TABLES[queue]
    key = "idx" if queue == "outbound" else "client"
    spare, params = _not_held_by_others(node, now)
    lock_message(connection, queue, message_id)
    ended = [
        row[0]
        for row in connection.execute(
            f"UPDATE {jobs} SET status = 'failed', last_reply = ?, next_attempt_at = NULL,"  # noqa: S608
            " updated_at = ?, claimed_by = NULL, lease_until = ?"
            " WHERE message_id = ? AND status IN ('queued', 'deferred')"
            + spare
            + f" RETURNING {key}",
            (QUARANTINE_PREFIX + reason, now, now, message_id, *params),
        ).fetchall()
    ]
    if not ended:
        if node is not None and jobs_pending(connection, queue, message_id):
            raise LeaseLostError(f"the pending {called} of {message_id} are held by another node")
        return ended
    if node is None or not jobs_pending(connection, queue, message_id):
        mark_finished(connection, queue, message_id, now)
    return ended


def _not_held_by_others(node: str | None, now: float) -> tuple[str, tuple[object, ...]]:
    """The condition under which a quarantine by ``node`` may change a row: nobody holds
    it, its lease ended, or ``node`` holds it."""
    if node is None:
        return "", ()
    return " AND (claimed_by IS NULL OR claimed_by = ? OR lease_until < ?)", (node, now)
