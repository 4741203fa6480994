"""The suppression list API's SQL: list, search, look up, add and remove entries.

Reads run on the store's read thread, adds and removals on its writer (inside its batch
transaction, like the admin actions), so they never race a send's check. Every query is
bounded: a page reads at most ``limit`` entries through an index, or, for a substring
search, at most :data:`~rail.store.suppressionmodel.SUPPRESSION_SCAN` entries.
"""

from __future__ import annotations

from rail.store.db import Connection
from rail.store.suppressionmodel import (
    MAX_SUPPRESSION_PAGE,
    SUPPRESSION_SCAN,
    SuppressionCursor,
    SuppressionPage,
    SuppressionQuery,
)
from rail.store.suppressions import Suppression, normalize, suppress, suppressed, unsuppress

__all__ = ["add_entry", "get_entry", "list_entries", "remove_entry"]

_COLUMNS = "address, reason, source, message_id, detail, created_at"


def _entry(client: str, row: tuple[object, ...]) -> Suppression:
    address, reason, source, message_id, detail, created_at = row
    return Suppression(
        client=client,
        address=str(address),
        reason=reason,  # type: ignore[arg-type]
        source=str(source),
        created_at=float(created_at),  # type: ignore[arg-type]
        message_id=None if message_id is None else str(message_id),
        detail=None if detail is None else str(detail),
    )


def _prefix_end(prefix: str) -> str:
    """The least string above every string that starts with ``prefix`` (binary order)."""
    return prefix + "\U0010ffff"


def list_entries(connection: Connection, query: SuppressionQuery) -> SuppressionPage:
    """The page of ``query`` (see :mod:`rail.store.suppressionmodel`)."""
    limit = max(1, min(query.limit, MAX_SUPPRESSION_PAGE))
    cursor = query.cursor
    if query.prefix is not None:
        prefix = normalize(query.prefix)
        after = prefix if cursor is None else max(prefix, cursor.address)
        operator = ">=" if cursor is None else ">"
        rows = connection.execute(
            f"SELECT {_COLUMNS} FROM suppressions WHERE client = ? AND address {operator} ?"  # noqa: S608
            " AND address < ? ORDER BY address LIMIT ?",
            (query.client, after, _prefix_end(prefix), limit),
        ).fetchall()
        entries = tuple(_entry(query.client, row) for row in rows)
        return SuppressionPage(entries, _last(entries) if len(entries) == limit else None)
    sql = f"SELECT {_COLUMNS} FROM suppressions WHERE client = ?"  # noqa: S608
    params: list[object] = [query.client]
    if cursor is not None:
        sql += " AND (created_at, address) < (?, ?)"
        params += [cursor.created_at, cursor.address]
    sql += " ORDER BY created_at DESC, address DESC LIMIT ?"
    if query.q is None:
        rows = connection.execute(sql, [*params, limit]).fetchall()
        entries = tuple(_entry(query.client, row) for row in rows)
        return SuppressionPage(entries, _last(entries) if len(entries) == limit else None)
    needle = query.q.strip().lower()
    examined = connection.execute(sql, [*params, SUPPRESSION_SCAN]).fetchall()
    found: list[Suppression] = []
    for row in examined:
        if needle in str(row[0]):
            found.append(_entry(query.client, row))
            if len(found) == limit:
                return SuppressionPage(tuple(found), _last(found))
    if len(examined) < SUPPRESSION_SCAN:
        return SuppressionPage(tuple(found), None)
    last = examined[-1]
    return SuppressionPage(tuple(found), SuppressionCursor(float(last[5]), str(last[0])))


def _last(entries: tuple[Suppression, ...] | list[Suppression]) -> SuppressionCursor:
    return SuppressionCursor(entries[-1].created_at, entries[-1].address)


def get_entry(connection: Connection, client: str, address: str) -> Suppression | None:
    """``client``'s entry for ``address``, or None."""
    return suppressed(connection, client, [address]).get(address)


def add_entry(connection: Connection, entry: Suppression) -> tuple[Suppression, bool]:
    """List ``entry`` unless its address is listed; the entry now listed, and whether new."""
    existing = get_entry(connection, entry.client, entry.address)
    if existing is not None:
        return existing, False
    suppress(connection, [entry])
    return entry, True


def remove_entry(connection: Connection, client: str, address: str) -> bool:
    """Take ``address`` off ``client``'s list; whether it was on it."""
    return unsuppress(connection, client, address)
