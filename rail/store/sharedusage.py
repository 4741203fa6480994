"""Every node's acceptances per client, in the shared database, for cluster-wide rate limits.

With PostgreSQL several processes (workers, hosts) accept mail for the same clients; each
counts its own acceptances in memory (:class:`rail.policy.rates.ClientRates`), and reads
the others' here. The writer adds, in the transaction that accepts the messages, one
upsert per client and 5-second bucket per batch to ``client_usage`` under its own node id
(:func:`add_usage`): the node is in the key, so no two nodes ever update the same row
and writers never wait on each other's locks. Each process reads the rows of the other
nodes from a recent bucket on (:func:`others_usage`, on its read thread, about once a
second: :mod:`rail.store.usagepoll`); retention deletes rows older than a day
(:func:`purge_usage`, in bounded steps).

DSNs Rail made (null sender) are not the client's sending and are not counted, as in
:mod:`rail.store.usage`. PostgreSQL only: a SQLite queue belongs to one process.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from rail.store.db import Connection
from rail.store.model import NewMessage

__all__ = [
    "USAGE_BUCKET",
    "USAGE_RETENTION",
    "add_usage",
    "bucket_of",
    "others_usage",
    "others_usage_by_minute",
    "purge_usage",
]

USAGE_BUCKET = 5.0
"""Seconds per row: the bucket width of the per-minute window."""

USAGE_RETENTION = 86400.0 + 60.0
"""Rows of buckets older than this (a day, the longest window, and a minute to spare)
count for nothing and are deleted."""


def bucket_of(when: float) -> float:
    """The start of the bucket ``when`` falls in."""
    return math.floor(when / USAGE_BUCKET) * USAGE_BUCKET


def add_usage(connection: Connection, node: str, messages: Iterable[NewMessage]) -> int:
    """Count ``messages`` (accepted in the caller's transaction) for ``node``: one upsert
    per client and bucket of their ``received_at``; the number of upserts."""
    totals: dict[tuple[str, float], list[int]] = {}
    for message in messages:
        if not message.sender:
            continue
        key = (message.client, bucket_of(message.received_at))
        counted = totals.get(key)
        if counted is None:
            totals[key] = [1, len(message.recipients)]
        else:
            counted[0] += 1
            counted[1] += len(message.recipients)
    if totals:
        connection.executemany(
            "INSERT INTO client_usage (client, bucket, node, messages, recipients)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (client, bucket, node) DO UPDATE SET"
            " messages = client_usage.messages + excluded.messages,"
            " recipients = client_usage.recipients + excluded.recipients",
            [(client, bucket, node, n, r) for (client, bucket), (n, r) in sorted(totals.items())],
        )
    return len(totals)


def others_usage(
    connection: Connection, node: str, since: float
) -> list[tuple[str, float, str, int, int]]:
    """``(client, bucket, node, messages, recipients)`` of every node but ``node`` from the
    bucket ``since`` falls in on: running totals, which the reader turns into deltas."""
    rows = connection.execute(
        "SELECT client, bucket, node, messages, recipients FROM client_usage"
        " WHERE bucket >= ? AND node != ?",
        (bucket_of(since), node),
    ).fetchall()
    return [(str(c), float(b), str(n), int(m), int(r)) for c, b, n, m, r in rows]


def others_usage_by_minute(
    connection: Connection, node: str, since: float, until: float
) -> list[tuple[str, float, int, int]]:
    """``(client, minute, messages, recipients)`` of every node but ``node`` for the buckets
    from ``since`` up to (not including) ``until``, summed per client and minute (the hour
    window's bucket): the start-up seed of what is too old for the per-minute window, in
    at most a row per client and minute however many nodes and buckets."""
    rows = connection.execute(
        "SELECT client, floor(bucket / 60) * 60 AS minute, sum(messages), sum(recipients)"
        " FROM client_usage WHERE bucket >= ? AND bucket < ? AND node != ?"
        " GROUP BY client, minute",
        (since, until, node),
    ).fetchall()
    return [(str(c), max(float(m), since), int(n), int(r)) for c, m, n, r in rows]


def purge_usage(connection: Connection, before: float, limit: int) -> int:
    """Delete up to ``limit`` rows of buckets before ``before`` (in autocommit: one
    statement); how many."""
    return int(
        connection.execute(
            "DELETE FROM client_usage WHERE (client, bucket, node) IN (SELECT client, bucket,"
            " node FROM client_usage WHERE bucket < ? ORDER BY bucket LIMIT ?)",
            (before, limit),
        ).rowcount
    )
