"""Checks of stored rows before their bytes leave Rail: size, ``sha256`` and SQLite types.

Every message row carries the size and SHA-256 of its data, computed when it was written.
Delivery and webhook claims read rows through these checks, so a row damaged at rest (a
truncated blob, a value of the wrong type, bytes that no longer match their hash) is never
sent as if it were the accepted message: the caller quarantines it and carries on with the
others. Columns are read as SQLite stores them (``typeof`` and ``CAST(... AS BLOB)``), and
SQLite's own report of a damaged page (``SQLITE_CORRUPT``) while reading one row is that
row's problem, so a damaged value becomes a reason here, never an exception that fails a
whole claim. PostgreSQL keeps each column to its type and its text valid, so there only
the size and hash checks can find something (:class:`rail.store.db.Dialect` says how each
engine is read). Pure: no Twisted.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from typing import Any

from rail.store.db import Connection, dialect_of

__all__ = [
    "UnreadableRowError",
    "damaged_row",
    "data_problem",
    "number",
    "stored_bytes",
    "text",
    "verified_row",
]


class UnreadableRowError(Exception):
    """A stored row cannot be used; the message says why (it becomes the quarantine
    reason, so it names the column and never quotes content)."""


def data_problem(kind: object, data: object, size: object, digest: object) -> str | None:
    """Why the stored ``data`` (of SQLite type ``kind``) is not what was accepted, or None.

    ``size`` and ``digest`` are the row's ``size`` column and its ``sha256`` column read as
    bytes (``CAST(sha256 AS BLOB)``).
    """
    if kind == "null":
        return "stored data is missing (NULL)"
    if kind != "blob" or not isinstance(data, bytes):
        return f"stored data has the wrong type ({kind})"
    if not isinstance(size, int) or isinstance(size, bool):
        return "stored size is unreadable"
    if len(data) < size:
        return f"stored data is truncated ({len(data)} of {size} bytes)"
    if len(data) != size:
        return f"stored data has {len(data)} bytes, {size} were accepted"
    if not isinstance(digest, bytes) or hashlib.sha256(data).hexdigest().encode() != digest:
        return "stored data does not match its sha256"
    return None


def damaged_row(error: sqlite3.DatabaseError) -> UnreadableRowError | None:
    """The reason to quarantine a row whose reading failed with ``error``, if SQLite says
    the file is damaged there (``SQLITE_CORRUPT``: a broken overflow chain, a bad page);
    None for any other error (I/O, locking...), which is the store's, not the row's."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is None or code & 0xFF != sqlite3.SQLITE_CORRUPT:
        return None
    return UnreadableRowError(f"stored row is damaged ({error})")


def text(value: object, column: str) -> str:
    """A text column read as bytes (``CAST(column AS BLOB)``), decoded; :class:`UnreadableRowError`
    if it is NULL or not UTF-8."""
    if not isinstance(value, bytes):
        raise UnreadableRowError(f"stored {column} is missing")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableRowError(f"stored {column} is not UTF-8") from None


def number(value: object, column: str) -> float:
    """A numeric column; :class:`UnreadableRowError` if SQLite holds anything but a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnreadableRowError(f"stored {column} is not a number")
    return float(value)


def stored_bytes(value: object) -> bytes:
    """A blob read only to quote from it (a DSN's header section): empty if it is not
    bytes, so a damaged row cannot fail the transaction recording a bounce."""
    return value if isinstance(value, bytes) else b""


def verified_rows(
    connection: Connection, table: str, columns: str, keys: Sequence[str]
) -> dict[str, tuple[Any, ...] | UnreadableRowError]:
    """:func:`verified_row` of each of ``keys`` in one statement (an array parameter:
    :attr:`rail.store.db.Dialect.array_parameters`), each row checked alone: its columns
    and data, or the UnreadableRowError that says why it cannot be used."""
    dialect = dialect_of(connection)
    kind = dialect.storage_class.format("data")
    query = (
        f"SELECT id, {columns}, size, {dialect.as_bytes.format('sha256')}, {kind},"  # noqa: S608
        f" CASE {kind} WHEN 'blob' THEN data END FROM {table} WHERE id = ANY(?)"
    )
    found: dict[str, tuple[Any, ...] | UnreadableRowError] = {
        key: UnreadableRowError("stored message row is missing") for key in keys
    }
    for key, *fields, size, digest, stored, data in connection.execute(query, (list(keys),)):
        problem = data_problem(stored, data, size, digest)
        found[key] = (*fields, data) if problem is None else UnreadableRowError(problem)
    return found


def verified_row(connection: Connection, table: str, columns: str, key: str) -> tuple[Any, ...]:
    """Row ``key`` of ``table`` (``messages`` or ``inbound``): its ``columns`` as stored,
    then its data, checked against its size and sha256.

    :class:`UnreadableRowError` if the row is missing or damaged, including pages SQLite
    reports corrupt; any other SQLite error (I/O, locking) is the store's and propagates.
    """
    # ``table`` and ``columns`` are the callers' constants, never input.
    dialect = dialect_of(connection)
    kind = dialect.storage_class.format("data")
    query = (
        f"SELECT {columns}, size, {dialect.as_bytes.format('sha256')}, {kind},"  # noqa: S608
        f" CASE {kind} WHEN 'blob' THEN data END FROM {table} WHERE id = ?"
    )
    try:
        row = connection.execute(query, (key,)).fetchone()
    except sqlite3.DatabaseError as error:
        damage = damaged_row(error)
        if damage is None:
            raise
        raise damage from None
    if row is None:
        raise UnreadableRowError("stored message row is missing")
    *fields, size, digest, kind, data = row
    problem = data_problem(kind, data, size, digest)
    if problem is not None:
        raise UnreadableRowError(problem)
    return (*fields, data)
