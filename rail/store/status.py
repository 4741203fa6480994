"""A message's status as ``GET /api/v1/messages/{id}`` shows it, read from the queue.

Runs on the store's read thread (or the writer's, when there is none), and from
``rail.store.inspect`` for the CLI; both engines run this SQL.
"""

from __future__ import annotations

from rail.store.bouncereports import attach_reports
from rail.store.db import Connection
from rail.store.messagemeta import read_meta
from rail.store.model import MessageMeta, MessageStatus, RecipientStatus, overall_status
from rail.store.sendcheck import merged, read_suppressed

__all__ = ["read_status"]


def read_status(connection: Connection, client: str, message_id: str) -> MessageStatus | None:
    """The status of ``message_id`` if ``client`` owns it, else None; never reads the data.
    A quarantined message's ``reason`` is its failed recipients' last reply."""
    row = connection.execute(
        "SELECT id, client, sender, channel, size, received_at,"
        " (SELECT body_purged_at FROM finished WHERE queue = 'outbound' AND id = messages.id)"
        " FROM messages WHERE id = ? AND client = ?",
        (message_id, client),
    ).fetchone()
    if row is None:
        return None
    queued = [
        (
            idx,
            RecipientStatus(
                address=address,
                status=status,
                attempts=attempts,
                last_reply=last_reply,
                next_attempt_at=next_attempt_at,
                updated_at=updated_at,
            ),
        )
        for idx, address, status, attempts, last_reply, next_attempt_at, updated_at in (
            connection.execute(
                "SELECT idx, address, status, attempts, last_reply, next_attempt_at, updated_at"
                " FROM recipients WHERE message_id = ? ORDER BY idx",
                (message_id,),
            )
        )
    ]
    recipients = attach_reports(
        connection, message_id, merged(queued, read_suppressed(connection, message_id))
    )
    meta = read_meta(connection, [message_id]).get(message_id, MessageMeta())
    return MessageStatus(
        id=row[0],
        client=row[1],
        sender=row[2],
        channel=row[3],
        size=row[4],
        received_at=row[5],
        status=overall_status(tuple(r.status for r in recipients)),
        recipients=recipients,
        reason=next((r.last_reply for r in recipients if r.status == "failed"), None),
        body_purged_at=row[6],
        meta=meta,
    )
