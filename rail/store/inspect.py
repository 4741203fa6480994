"""Synchronous, read-only views of the SQLite queue for the CLI (`rail dkim`) and tests.

The database is opened with ``mode=ro``, so these work while the server has it open (WAL
readers never block the writer) and can never change it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from rail.store.deliveries import oldest_pending_received_at as pending_since
from rail.store.model import Channel, MessageStatus, StoreUnavailableError
from rail.store.schema import database_path, open_readonly
from rail.store.status import read_status

__all__ = [
    "StoredMessage",
    "get_message",
    "get_status",
    "list_messages",
    "oldest_pending_received_at",
]

_SELECT_ALL = (
    "SELECT id, client, sender, channel, size, sha256, data, received_at, smtputf8, eight_bit"
    " FROM messages ORDER BY id"
)
_SELECT_ONE = (
    "SELECT id, client, sender, channel, size, sha256, data, received_at, smtputf8, eight_bit"
    " FROM messages WHERE id = ?"
)


@attrs.frozen
class StoredMessage:
    """A message as stored: ``data`` is exactly the accepted bytes, ``sha256`` (hex) was
    computed when it was written, so comparing them detects damage at rest."""

    id: str
    client: str
    sender: str
    recipients: tuple[str, ...]
    channel: Channel
    size: int
    sha256: str
    data: bytes
    received_at: float
    smtputf8: bool = False
    eight_bit: bool = False


def list_messages(directory: Path) -> list[StoredMessage]:
    """Every stored message, oldest first (ids are ULIDs), data included."""
    with _reading(directory) as connection:
        rows = connection.execute(_SELECT_ALL).fetchall()
        return [_stored(connection, row) for row in rows]


def get_message(directory: Path, message_id: str) -> StoredMessage | None:
    """The stored message ``message_id``, or None if the queue has no such message."""
    with _reading(directory) as connection:
        row = connection.execute(_SELECT_ONE, (message_id,)).fetchone()
        return None if row is None else _stored(connection, row)


def get_status(directory: Path, message_id: str) -> MessageStatus | None:
    """The delivery status of ``message_id`` whoever owns it (an operator's view)."""
    with _reading(directory) as connection:
        row = connection.execute(
            "SELECT client FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        return None if row is None else read_status(connection, row[0], message_id)


def oldest_pending_received_at(directory: Path) -> float | None:
    """When the oldest message still waiting for delivery (a recipient ``queued`` or
    ``deferred``) was received; None when there is none, or no queue database yet.

    ``rail dkim`` uses it to keep an old key published while queued mail may still be
    signed with it. An indexed O(log n) read (see
    :func:`rail.store.deliveries.oldest_pending_received_at`), but it opens the database:
    call it off the reactor, or use ``SQLiteStore.oldest_pending_received_at``.
    """
    if not database_path(directory).exists():
        return None
    with _reading(directory) as connection:
        return pending_since(connection)


@contextmanager
def _reading(directory: Path) -> Iterator[sqlite3.Connection]:
    """Open read-only; SQLite errors become :class:`StoreUnavailableError` naming the file."""
    connection = open_readonly(directory)
    try:
        yield connection
    except sqlite3.Error as error:
        path = database_path(directory)
        raise StoreUnavailableError(f"{path}: cannot read queue: {error}") from error
    finally:
        connection.close()


def _stored(connection: sqlite3.Connection, row: Any) -> StoredMessage:
    message_id, client, sender, channel, size, sha256, data, received_at, utf8, eight = row
    return StoredMessage(
        id=message_id,
        client=client,
        sender=sender,
        recipients=tuple(_recipients(connection, message_id)),
        channel=channel,
        size=size,
        sha256=sha256,
        data=bytes(data),
        received_at=received_at,
        smtputf8=bool(utf8),
        eight_bit=bool(eight),
    )


def _recipients(connection: sqlite3.Connection, message_id: str) -> Iterator[str]:
    """The whole envelope, the recipients a send found suppressed included."""
    for (address,) in connection.execute(
        "SELECT address FROM (SELECT idx, address FROM recipients WHERE message_id = ?"
        " UNION ALL SELECT idx, address FROM suppressed_recipients WHERE message_id = ?)"
        " AS envelope ORDER BY idx",
        (message_id, message_id),
    ):
        yield address
