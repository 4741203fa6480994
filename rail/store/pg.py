"""A PostgreSQL connection that runs the store's SQLite-style SQL.

The store's SQL is written once with qmark (``?``) parameters, as :mod:`sqlite3` takes
them. psycopg 3 takes ``%s``: :func:`translate` rewrites a statement's text once (cached by
text, so the cost is per distinct statement, not per call), leaving quoted literals,
identifiers and comments alone. The connection is in autocommit mode with explicit
``BEGIN``/``COMMIT``, as the SQLite connection is, and ``synchronous_commit`` is on: a
``COMMIT`` returns once the transaction is durable, which is what "accepted" promises.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus

from rail.store.db import POSTGRESQL, Dialect

__all__ = ["PGConnection", "connect", "describe_dsn", "translate"]


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """``sql`` with each ``?`` parameter as ``%s`` and each ``%`` doubled, outside quoted
    text, quoted identifiers and comments."""
    out: list[str] = []
    i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            end = i + 1
            while end < n:
                if sql[end] == c:
                    if end + 1 < n and sql[end + 1] == c:  # a doubled quote inside
                        end += 2
                        continue
                    break
                end += 1
            out.append(sql[i : end + 1].replace("%", "%%"))
            i = end + 1
        elif c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
        elif c == "?":
            out.append("%s")
            i += 1
        elif c == "%":
            out.append("%%")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _values(parameters: Sequence[Any]) -> tuple[Any, ...]:
    """SQLite stores booleans as integers, and the schema says INTEGER: so do we."""
    return tuple(int(value) if isinstance(value, bool) else value for value in parameters)


class PGConnection:
    """One psycopg connection, used by one thread at a time, as sqlite3's are."""

    dialect: Dialect = POSTGRESQL

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.raw = connection

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        if parameters:
            return self.raw.execute(translate(sql), _values(parameters))
        return self.raw.execute(sql)  # no parameters: sent as it is

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> psycopg.Cursor[Any]:
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), [_values(p) for p in parameters])
        return cursor

    def close(self) -> None:
        self.raw.close()


# A server that stops answering (a host gone, a network cut) must not hold the writer
# forever: TCP keepalives notice a silent peer, and tcp_user_timeout fails a send that
# stays unacknowledged, after about half a minute. The DSN may set its own.
_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}


def connect(dsn: str, *, application_name: str = "rail") -> PGConnection:
    """Open a connection to ``dsn`` for one thread; raises ``psycopg.Error`` (its message
    names the server) when the database cannot be reached."""
    given = conninfo_to_dict(dsn)
    defaults = {key: value for key, value in _DEFAULTS.items() if key not in given}
    connection = psycopg.connect(
        make_conninfo(dsn, **defaults), autocommit=True, application_name=application_name
    )
    connection.execute("SET synchronous_commit = on")
    return PGConnection(connection)


def describe_dsn(dsn: str) -> str:
    """``postgresql host=H port=P dbname=D`` for error messages: the parts of ``dsn`` that
    say where, never its password."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "postgresql (unparsable storage.dsn)"
    shown = [f"{key}={parts[key]}" for key in ("host", "port", "dbname") if parts.get(key)]
    return " ".join(["postgresql", *shown])
