"""The shared durable queue: :class:`QueueStore` on PostgreSQL (``storage.backend:
postgresql``).

Several Rail processes, on one host or several, share one database. What is PostgreSQL's
own is here: connecting with the DSN (and naming the server and database, never the
password, when that fails), making or checking the schema (:mod:`rail.store.pgschema`),
noticing a lost connection so the writer and read threads make a new one, and counting
pending mail from the database's tally rather than from one process's memory, since
every node's acceptances count against ``storage.max_queued``. Free space is the database
server's concern: ``storage.min_free_space`` and the disk reserve apply to SQLite only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import psycopg
from twisted.internet.interfaces import IReactorFromThreads

from rail.store import pg
from rail.store.db import Connection
from rail.store.lease import LEASE_SECONDS
from rail.store.model import StoreUnavailableError
from rail.store.pg import describe_dsn
from rail.store.pgschema import (
    PG_SCHEMA_VERSION,
    check_batch,
    count_pending,
    pending_messages,
    prepare,
    schema_version,
)
from rail.store.queuestore import QueueStore

__all__ = ["PostgresBackend", "PostgresStore", "describe_dsn"]

_UNLIMITED = 1 << 62


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


class PostgresBackend:
    """The database of ``dsn``."""

    shared = True

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._name = describe_dsn(dsn)

    def describe(self) -> str:
        return self._name

    def _connect(self, role: str) -> pg.PGConnection:
        try:
            return pg.connect(self._dsn, application_name=f"rail-{role}")
        except psycopg.Error as error:
            raise StoreUnavailableError(
                f"{self._name}: cannot connect: {_one_line(error)}"
            ) from error

    def connect(self) -> Connection:
        """A writer connection to a database at this Rail's schema version."""
        connection = self._connect("writer")
        try:
            version = schema_version(connection)
        except psycopg.Error as error:
            connection.close()
            raise StoreUnavailableError(
                f"{self._name}: unusable queue database: {_one_line(error)}"
            ) from error
        if version != PG_SCHEMA_VERSION:
            connection.close()
            raise StoreUnavailableError(f"{self._name}: unsupported queue schema version {version}")
        return connection

    def connect_reader(self) -> Connection | None:
        return self._connect("reader")

    def prepare(self) -> None:
        """Create or migrate the schema (first start; several nodes may do this at once)."""
        connection = self._connect("schema")
        try:
            prepare(connection, self._name)
            pending_messages(connection)  # reads the tables the writer needs: fail now
        except psycopg.Error as error:
            raise StoreUnavailableError(
                f"{self._name}: unusable queue database: {_one_line(error)}"
            ) from error
        finally:
            connection.close()

    def pending(self, connection: Connection) -> int:
        return pending_messages(connection)

    def pending_later(self, connection: Connection) -> Callable[[], int]:
        return count_pending(connection)

    def check_batch(
        self, connection: Connection, pairs: Sequence[tuple[str, str]], max_queued: int
    ) -> None:
        check_batch(connection, pairs, max_queued)

    def lost(self, connection: Connection) -> bool:
        raw = getattr(connection, "raw", None)
        return raw is None or bool(raw.closed or raw.broken)

    def free_bytes(self) -> int:
        return _UNLIMITED  # the database server's concern


class PostgresStore(QueueStore):
    """The queue in the PostgreSQL database of ``dsn``. Build it with :meth:`open`."""

    def __init__(
        self,
        reactor: IReactorFromThreads,
        dsn: str,
        *,
        max_queued: int,
        lease: float = LEASE_SECONDS,
        node: str | None = None,
        leases: bool | None = None,
    ) -> None:
        """``lease``, ``node`` and ``leases``: see :class:`QueueStore` (``node`` defaults
        to this process's id; tests give two stores on one database their own, and the
        tests of a single node's contract turn leases off)."""
        self.backend = PostgresBackend(dsn)
        super().__init__(
            reactor,
            self.backend,
            max_queued=max_queued,
            min_free_bytes=0,
            lease=lease,
            node=node,
            leases=leases,
        )

    @classmethod
    def open(
        cls,
        dsn: str,
        reactor: IReactorFromThreads,
        *,
        max_queued: int,
        lease: float = LEASE_SECONDS,
        node: str | None = None,
        leases: bool | None = None,
    ) -> PostgresStore:
        """Connect, create the schema in an empty database or migrate an older one; call
        :meth:`start` before the store answers anything.

        Synchronous, for start-up before the reactor runs. Raises
        :class:`StoreUnavailableError` with a one-line message naming the server and
        database when it cannot be reached or is at an unknown schema version. No
        connection or thread is kept, so twistd may fork between ``open`` and ``start``.
        """
        store = cls(reactor, dsn, max_queued=max_queued, lease=lease, node=node, leases=leases)
        store.backend.prepare()
        return store
