"""Who holds a claimed job, until when: the leases that let several nodes share one queue.

Several processes (and hosts) share one PostgreSQL queue; a claim writes the claiming
process's id (``claimed_by``) and a lease end (``lease_until``) into each row it takes,
in the transaction that selected the rows (``FOR UPDATE SKIP LOCKED``: rows another node
is claiming at that moment are skipped, not waited for). Until the lease ends no other
node takes the row; the holder renews its leases while it works
(:mod:`rail.jobs.runner`), and recording a result ends the lease (``claimed_by`` NULL,
``lease_until`` the result's time). A result recorded by a node that no longer holds its
rows (its lease ended and another node took them) changes nothing:
:class:`LeaseLostError`, raised before any write, and the store answers
:class:`rail.store.model.Stale`. So a node that dies loses its jobs to the others after
at most one lease, and a job taken over is never applied twice.

The id is made once per process: a restarted process is a new node, so it never mistakes
its predecessor's leases for its own (those end with their lease).

SQLite's queue belongs to one process (:attr:`rail.store.db.Dialect.leases` is false
there): its claims take no leases and its results are applied as they come, as before.
The columns exist in both schemas, so the same SQL runs on either.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import attrs
from ulid import ULID

from rail.store.db import Connection, dialect_of

__all__ = [
    "LEASED_TABLES",
    "LEASE_SCHEMA",
    "LEASE_SECONDS",
    "RENEW_CHUNK",
    "Lease",
    "LeaseLostError",
    "claimable",
    "for_update",
    "node_id",
    "release",
    "renew",
    "still_held",
    "take",
]

LEASE_SECONDS = 60.0
"""How long a claim holds a job without being renewed (``storage.lease``'s default); a
node that dies loses its jobs to the others after at most this long."""

LEASED_TABLES = ("recipients", "webhooks", "events")
"""The tables of durable jobs, each row a job (or, for ``recipients``, part of one)."""

# SQLite's schema version 14: who holds each job, until when (NULL: nobody). PostgreSQL's
# schema has the same columns (``lease_until`` a DOUBLE PRECISION).
LEASE_SCHEMA = "".join(
    f"ALTER TABLE {table} ADD COLUMN claimed_by TEXT;\n"
    f"ALTER TABLE {table} ADD COLUMN lease_until REAL;\n"
    for table in LEASED_TABLES
)

RENEW_CHUNK = 64
"""Ids per renewing ``UPDATE``: a round renews its in-flight jobs with one statement per
this many (the last list padded, so every statement has the same text)."""

_NODE: tuple[int, str] | None = None


def node_id() -> str:
    """``host/pid/ulid``, the same for the life of this process (a forked child gets its own)."""
    global _NODE
    pid = os.getpid()
    if _NODE is None or _NODE[0] != pid:
        _NODE = (pid, f"{socket.gethostname()}/{pid}/{ULID()}")
    return _NODE[1]


class LeaseLostError(Exception):
    """A result for rows this node no longer holds: another node took them after the
    lease ended. Raised before anything is written."""


@attrs.frozen
class Lease:
    """What a claim writes into the rows it takes: ``node`` holds them until ``until``;
    rows whose lease ended before ``now`` may be taken."""

    node: str
    now: float
    until: float


def claimable(lease: Lease | None) -> tuple[str, tuple[Any, ...]]:
    """The condition (to add with ``AND``) and its parameters under which a claim may take
    a row: nobody holds it, or its lease ended. Nothing without a lease.

    A row this node holds is not claimed again while its lease lasts: those are its jobs in
    flight, which its renewals keep held, so a claim never reads (nor locks) them; a job
    it holds but gave up (not started when stopping, or offered beyond its backlog) is
    released (:func:`release`) and so claimable at once by any node."""
    if lease is None:
        return "", ()
    return " AND (lease_until IS NULL OR lease_until < ?)", (lease.now,)


def for_update(connection: Connection, lease: Lease | None) -> str:
    """What ends a claim's ``SELECT``: with a lease, rows another node's claim has locked
    are skipped (PostgreSQL's ``FOR UPDATE SKIP LOCKED``; nothing on SQLite)."""
    return dialect_of(connection).skip_locked if lease is not None else ""


def take(
    connection: Connection,
    table: str,
    columns: Sequence[str],
    keys: Iterable[Sequence[Any]],
    lease: Lease,
) -> None:
    """Write ``lease`` into the rows of ``table`` whose ``columns`` equal each of ``keys``
    (in the claim's transaction)."""
    where = " AND ".join(f"{column} = ?" for column in columns)
    connection.executemany(
        f"UPDATE {table} SET claimed_by = ?, lease_until = ? WHERE {where}",  # noqa: S608
        [(lease.node, lease.until, *key) for key in keys],
    )


def still_held(
    connection: Connection,
    table: str,
    columns: Sequence[str],
    keys: Sequence[Sequence[Any]],
    node: str | None,
) -> None:
    """Raise :class:`LeaseLostError` unless a result of ``node`` may be written to every
    row of ``table`` that ``keys`` name: ``node`` holds it, or nobody has claimed it since
    it was stored or released (``lease_until`` NULL: no other node ran it). A row another
    node holds, or whose lease a recorded result ended (``claimed_by`` NULL, ``lease_until``
    the result's time: another node took the job over and recorded it), refuses. Rows that
    are gone are not in the way; nothing is checked when ``node`` is None (no leases)."""
    if node is None:
        return
    where = " AND ".join(f"{column} = ?" for column in columns)
    for key in keys:
        row = connection.execute(
            f"SELECT claimed_by, lease_until FROM {table} WHERE {where}",  # noqa: S608
            tuple(key),
        ).fetchone()
        if row is None or row[0] == node or (row[0] is None and row[1] is None):
            continue
        name = "/".join(map(str, key))
        if row[0] is None:
            raise LeaseLostError(f"{table} {name} was taken over and recorded by another node")
        raise LeaseLostError(f"{table} {name} is held by {row[0]}")


def renew(
    connection: Connection,
    table: str,
    column: str,
    ids: Iterable[Hashable],
    node: str,
    until: float,
) -> int:
    """Move the lease end of the pending rows of ``table`` that ``node`` holds and whose
    ``column`` is one of ``ids`` to ``until``; how many rows. A row another node took in the
    meantime is not touched."""
    wanted = list(dict.fromkeys(ids))
    renewed = 0
    for start in range(0, len(wanted), RENEW_CHUNK):
        chunk = wanted[start : start + RENEW_CHUNK]
        chunk += [chunk[-1]] * (RENEW_CHUNK - len(chunk))
        marks = ", ".join("?" * RENEW_CHUNK)
        renewed += connection.execute(
            f"UPDATE {table} SET lease_until = ? WHERE claimed_by = ?"  # noqa: S608
            f" AND status IN ('queued', 'deferred') AND {column} IN ({marks})",
            (until, node, *chunk),
        ).rowcount
    return renewed


def release(
    connection: Connection,
    table: str,
    columns: Sequence[str],
    keys: Iterable[Sequence[Any]],
    node: str,
) -> None:
    """Give up ``node``'s hold on the rows of ``table`` whose ``columns`` equal each of
    ``keys``, so any node may claim them at once (jobs not started when stopping)."""
    where = " AND ".join(f"{column} = ?" for column in columns)
    connection.executemany(
        f"UPDATE {table} SET claimed_by = NULL, lease_until = NULL"  # noqa: S608
        f" WHERE {where} AND claimed_by = ?",
        [(*key, node) for key in keys],
    )
