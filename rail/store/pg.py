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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
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


class _Queued:
    """A cursor whose statement may not have been answered yet (pipeline mode): its rows
    are fetched when read (psycopg waits for them), and its row count once the pipeline
    has been synced up to it."""

    def __init__(self, cursor: psycopg.Cursor[Any], connection: PGConnection) -> None:
        self._cursor = cursor
        self._connection = connection

    @property
    def rowcount(self) -> int:
        self._connection.sync()  # nothing to do once pipeline mode has ended
        return self._cursor.rowcount

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor.fetchall())


class PGConnection:
    """One psycopg connection, used by one thread at a time, as sqlite3's are."""

    dialect: Dialect = POSTGRESQL

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.raw = connection
        self._pipeline: psycopg.Pipeline | None = None
        # Rows waiting for a multi-row statement (see defer), by what writes them, in the
        # order each was first deferred.
        self._deferred: dict[Callable[[PGConnection, list[tuple[Any, ...]]], None], list[Any]] = {}

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def defer(
        self,
        write: Callable[[PGConnection, list[tuple[Any, ...]]], None],
        row: tuple[Any, ...],
    ) -> None:
        """Have ``write`` store ``row``, with every row deferred to it until this
        connection's next statement (or the end of pipeline mode), in one statement: a
        batch of messages costs one statement, not one each (the driver's work per
        statement, not the server's, is what a busy process runs short of). The writes
        are made in the order each was first deferred to, so rows that refer to others
        (a message's meta to its message) come after them; the caller must not defer
        rows whose order across writes matters otherwise. Outside pipeline mode,
        ``write`` is called at once."""
        if self._pipeline is None:
            write(self, [row])
        else:
            self._deferred.setdefault(write, []).append(row)

    def sync(self) -> None:
        """In pipeline mode, wait until every statement sent so far is answered."""
        if self._pipeline is not None:
            self._flush()
            self._pipeline.sync()

    def _flush(self) -> None:
        deferred, self._deferred = self._deferred, {}
        for write, rows in deferred.items():
            write(self, rows)

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        self._flush()
        if parameters:
            cursor = self.raw.execute(translate(sql), _values(parameters))
        else:
            cursor = self.raw.execute(sql)  # no parameters: sent as it is
        return cursor if self._pipeline is None else _Queued(cursor, self)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Any:
        self._flush()
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), [_values(p) for p in parameters])
        return cursor if self._pipeline is None else _Queued(cursor, self)

    @contextmanager
    def pipelined(self) -> Iterator[None]:
        """Pipeline mode for the statements run inside: each is sent without waiting for
        the server's answer to the one before, and waited for only when its rows or row
        count are read, or when the block ends (which raises the first error). A batch of
        inserts and its COMMIT then cost one round trip, not one each. An error may
        therefore surface at a later statement than the one that caused it, and after an
        error the server skips every statement up to the end of the block: only a caller
        that treats any error as the whole transaction's (the writer's first pass
        without savepoints) may use this."""
        with self.raw.pipeline() as pipeline:
            self._pipeline = pipeline
            try:
                yield
                self._flush()
            finally:
                self._pipeline = None
                self._deferred = {}

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
