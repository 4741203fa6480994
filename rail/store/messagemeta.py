"""An outbound message's ``request_id``, ``tag`` and metadata in the SQLite queue.

A table of its own rather than columns of ``messages``: columns added there would come
after ``data`` and every read of them would walk the body's overflow pages; and most
messages carry none, so they cost no row at all. Deleted with their message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rail.store.db import Connection
from rail.store.model import MessageMeta

__all__ = ["MESSAGE_META_SCHEMA", "insert_meta", "read_meta"]

MESSAGE_META_SCHEMA = """
CREATE TABLE message_meta (
    message_id TEXT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    request_id TEXT,
    tag TEXT,
    metadata TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX message_meta_request ON message_meta (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX message_meta_tag ON message_meta (tag) WHERE tag IS NOT NULL;
"""


def insert_meta(connection: Connection, message_id: str, meta: MessageMeta) -> None:
    """Record ``meta`` for a message being inserted (in the caller's transaction); nothing
    when it is empty."""
    if not meta:
        return
    row = (
        message_id,
        meta.request_id,
        meta.tag,
        json.dumps(dict(meta.metadata), separators=(",", ":"), sort_keys=True),
    )
    defer = getattr(connection, "defer", None)  # PostgreSQL: with the batch's others
    if defer is None:
        connection.execute(_INSERT, row)
    else:
        defer(_insert_many, row)


_INSERT = "INSERT INTO message_meta (message_id, request_id, tag, metadata) VALUES (?, ?, ?, ?)"


def _insert_many(connection: Connection, rows: list[tuple[Any, ...]]) -> None:
    if len(rows) == 1:
        connection.execute(_INSERT, rows[0])
        return
    connection.execute(
        "INSERT INTO message_meta (message_id, request_id, tag, metadata)"
        " SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[])",
        tuple(list(column) for column in zip(*rows, strict=True)),
    )


def read_meta(connection: Connection, message_ids: Sequence[str]) -> dict[str, MessageMeta]:
    """The meta of each of ``message_ids`` that has any (one primary-key look-up each)."""
    found: dict[str, MessageMeta] = {}
    for message_id in dict.fromkeys(message_ids):
        row = connection.execute(
            "SELECT request_id, tag, metadata FROM message_meta WHERE message_id = ?",
            (message_id,),
        ).fetchone()
        if row is not None:
            found[message_id] = MessageMeta(
                request_id=row[0], tag=row[1], metadata=json.loads(row[2])
            )
    return found
