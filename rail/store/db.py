"""What the store's SQL functions need of a database connection, whichever engine is behind it.

Every function of :mod:`rail.store` takes a :class:`Connection`: a ``sqlite3.Connection``
(the embedded backend) or a :class:`rail.store.pg.PGConnection` (PostgreSQL), which takes
the same qmark SQL. SQL both engines run is written once; what differs between them is a
field of :class:`Dialect`, so each backend's differences are in one place.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import attrs
import psycopg

__all__ = [
    "DATABASE_ERRORS",
    "POSTGRESQL",
    "SQLITE",
    "Connection",
    "Cursor",
    "Dialect",
    "dialect_of",
]

DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
"""What a failing statement raises on either engine: catch this, not ``sqlite3.Error``."""


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """The part of ``sqlite3.Connection`` the store uses, in autocommit mode (explicit
    ``BEGIN``/``COMMIT``)."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any: ...

    def close(self) -> None: ...


@attrs.frozen
class Dialect:
    """The SQL that is not the same on both engines."""

    name: str
    begin: str
    """Opens a write transaction: SQLite takes its write lock at once (``IMMEDIATE``), so
    a transaction never fails half-way for want of it."""
    skip_locked: str
    """Appended to a claim's ``SELECT``: rows another node's open transaction holds are
    skipped, not waited for (nothing to skip with SQLite's single writer)."""
    begin_read: str
    """Opens a read transaction: one snapshot for every statement of a read."""
    as_bytes: str
    """A text column read as its stored bytes (``{}`` is the column), for the integrity
    checks (:mod:`rail.store.integrity`): SQLite stores whatever bytes it was given, so
    they are checked as UTF-8 here; PostgreSQL guarantees valid text, and its UTF-8
    bytes are what the checks then see."""
    storage_class: str
    """The storage class of a value (``{}``), as SQLite's ``typeof`` names it: a
    PostgreSQL column has one type, ``blob`` for the ``BYTEA`` data."""
    json_member: str
    """The text of one member of a JSON object stored as text (``{}``: the column); its
    key is the parameter :attr:`json_key` makes."""
    json_key: str
    """The parameter naming a member for :attr:`json_member` (``{}``: the key)."""
    like_nocase: str
    """``LIKE`` that ignores ASCII case (SQLite's does; PostgreSQL's does not)."""
    floor: str
    """A non-negative number (``{}``) rounded down to an integer."""
    unindexed: str
    """Put before a column to keep the planner off its index (SQLite's unary ``+``)."""
    insertion_order: str
    """The column that orders rows of ``attempts`` and ``admin_actions`` as they were
    inserted: SQLite's ``rowid``, an identity column on PostgreSQL."""
    one_statement_inserts: bool
    """Whether a row and its children are inserted in one statement (PostgreSQL's
    data-modifying ``WITH`` and ``unnest`` of array parameters), saving the round trips
    a server costs; SQLite, in process, inserts them one statement each."""
    lock_message: str
    """Appended to a read of ``messages m`` that a delivery result makes before writing:
    the message's row is locked (``FOR NO KEY UPDATE``) until the transaction ends, so
    that when two nodes record the last pending recipients of one message at once, the
    second waits for the first and sees its change, and one of them finishes the message
    (each would otherwise see the other's recipient pending). SQLite's one writer
    serializes them anyway."""
    array_parameters: bool
    """Whether a statement takes an array parameter (``id = ANY(?)``), so that many rows
    are read by one statement: a claim then reads its messages in one round trip
    (PostgreSQL); SQLite reads each message by itself, and so can tell which row a damaged
    page belongs to (:mod:`rail.store.integrity`)."""
    next_savepoint: str | None
    """Releases one operation's savepoint and opens the next one's in one round trip to
    the server (PostgreSQL takes several statements in one call without parameters);
    None: each is a statement of its own (SQLite, in process, has no round trip)."""
    savepoints_after_failure: bool = False
    """Whether a batch's operations first run without a savepoint each, the batch being
    rolled back and written again with savepoints only when one of them fails: a
    savepoint is a round trip to a server (PostgreSQL), and operations almost never fail;
    in process (SQLite) a savepoint costs next to nothing, so it is always taken."""
    assumes: bool = False
    """Whether a batch is first written on assumptions, checked by one statement at its
    end (:meth:`rail.store.backend.Backend.check_batch`) rather than asked at its start
    at the cost of a round trip: none of its recipients is suppressed, and the pending
    count this node read at the end of its previous batch still holds. A batch whose
    check fails is written again after asking."""
    leases: bool = False
    """Whether claims take leases (:mod:`rail.store.lease`): several processes share the
    queue. SQLite's queue belongs to one process, whose runners keep the jobs they hold in
    memory; a lease there would only add a write (an fsync) to every claim."""


SQLITE = Dialect(
    name="sqlite",
    begin="BEGIN IMMEDIATE",
    skip_locked="",
    begin_read="BEGIN",
    as_bytes="CAST({} AS BLOB)",
    storage_class="typeof({})",
    json_member="json_extract({}, ?)",
    json_key='$."{}"',
    like_nocase="LIKE",
    floor="CAST({} AS INTEGER)",
    unindexed="+",
    insertion_order="rowid",
    one_statement_inserts=False,
    lock_message="",
    array_parameters=False,
    next_savepoint=None,
)
POSTGRESQL = Dialect(
    name="postgresql",
    begin="BEGIN",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    begin_read="BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    as_bytes="convert_to({}, 'UTF8')",
    storage_class="CASE WHEN {} IS NULL THEN 'null' ELSE 'blob' END",
    json_member="(({})::jsonb ->> ?)",
    json_key="{}",
    like_nocase="ILIKE",
    floor="floor({})",
    unindexed="",
    insertion_order="seq",
    one_statement_inserts=True,
    lock_message=" FOR NO KEY UPDATE OF m",
    array_parameters=True,
    next_savepoint="RELEASE op; SAVEPOINT op",
    savepoints_after_failure=True,
    assumes=True,
    leases=True,
)


def dialect_of(connection: Connection) -> Dialect:
    """The dialect of ``connection``: a PGConnection says so, anything else is SQLite."""
    dialect = getattr(connection, "dialect", None)
    return dialect if isinstance(dialect, Dialect) else SQLITE
