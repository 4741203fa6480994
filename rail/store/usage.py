"""What each client sent in the last day, for the rate limits' counters at start-up.

One read on the read thread: messages are found through their primary key, since a
message id is a ULID that starts with its acceptance time, so the read costs what the
last day holds, not what the queue holds. DSNs Rail made (null sender) are not the
client's sending and are left out.
"""

from __future__ import annotations

from ulid import ULID

from rail.store.db import SQLITE, Connection, Dialect, dialect_of

__all__ = ["USAGE_QUERY", "client_usage", "usage_query"]


def usage_query(dialect: Dialect) -> str:
    """Messages and recipients per client and minute (lowest id, since, until)."""
    # ``+client`` on SQLite: grouping by the bare column would have it walk the whole
    # ``messages_by_client`` index instead of the primary key's range.
    minute = dialect.floor.format("received_at / 60")
    return (
        f"SELECT {dialect.unindexed}client AS who, {minute} * 60.0 AS minute, count(*),"  # noqa: S608
        " sum((SELECT count(*) FROM recipients WHERE message_id = messages.id))"
        " FROM messages WHERE id >= ? AND received_at >= ? AND received_at < ?"
        " AND sender != '' GROUP BY who, minute"
    )


USAGE_QUERY = usage_query(SQLITE)
"""The query on SQLite."""


def _lowest_id(since: float) -> str:
    """The smallest ULID made at or after ``since``: its time, then zero randomness."""
    return str(ULID.from_timestamp(since))[:10] + "0" * 16


def client_usage(
    connection: Connection, since: float, until: float
) -> list[tuple[str, float, int, int]]:
    """``(client, minute, messages, recipients)`` for each client and minute with mail
    accepted from ``since`` up to (not including) ``until``; ``minute`` is the start of
    the minute, in seconds, or ``since`` for mail of the minute ``since`` falls in."""
    query = usage_query(dialect_of(connection))
    rows = connection.execute(query, (_lowest_id(since), since, until)).fetchall()
    return [(str(c), max(float(m), since), int(n), int(r or 0)) for c, m, n, r in rows]
