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
    leases: bool = False
    """Whether claims take leases (:mod:`rail.store.lease`): several processes share the
    queue. SQLite's queue belongs to one process, whose runners keep the jobs they hold in
    memory; a lease there would only add a write (an fsync) to every claim."""


SQLITE = Dialect(name="sqlite", begin="BEGIN IMMEDIATE", skip_locked="")
POSTGRESQL = Dialect(
    name="postgresql", begin="BEGIN", skip_locked=" FOR UPDATE SKIP LOCKED", leases=True
)


def dialect_of(connection: Connection) -> Dialect:
    """The dialect of ``connection``: a PGConnection says so, anything else is SQLite."""
    dialect = getattr(connection, "dialect", None)
    return dialect if isinstance(dialect, Dialect) else SQLITE
