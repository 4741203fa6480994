"""What the store's threads need of a database engine: connections, and the little that is
not SQL.

:class:`rail.store.queuestore.QueueStore` and its writer and read threads run the same
SQL on either engine (:mod:`rail.store.db`); what differs beyond SQL is here, one class
per engine: :class:`rail.store.sqlite.SQLiteBackend` (a file under ``data_dir``, its free
space and disk reserve) and :class:`rail.store.postgres.PostgresBackend` (a server shared
by several processes, reconnected when the connection is lost).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from rail.store.db import Connection

__all__ = ["ASSUMED_WRONG", "Backend"]

ASSUMED_WRONG = "RA001"
"""The SQLSTATE of the error :meth:`Backend.check_batch` fails a transaction with."""


class Backend(Protocol):
    """One engine's connections and capacity figures, used by the writer and read threads."""

    shared: bool
    """Whether other processes write to the same database: the pending count is then read
    from the database at each batch, not kept in this process's memory."""

    def describe(self) -> str:
        """What to name in a one-line error: the file, or the server and database (never
        a password)."""
        ...

    def connect(self) -> Connection:
        """A connection for the writer thread; raises StoreUnavailableError."""
        ...

    def connect_reader(self) -> Connection | None:
        """A connection for the read thread, or None: reads then run on the writer thread
        (a SQLite database the writer holds in exclusive mode)."""
        ...

    def free_bytes(self) -> int:
        """Free space for the next batch, against ``storage.min_free_space``."""
        ...

    def pending(self, connection: Connection) -> int:
        """Messages with a recipient still to deliver: what ``max_queued`` limits."""
        ...

    def pending_later(self, connection: Connection) -> Callable[[], int]:
        """:meth:`pending`, asked now and read when called: a batch in pipeline mode
        (:meth:`rail.store.pg.PGConnection.pipelined`) gets it back in the same round trip
        as its next read."""
        ...

    def check_batch(
        self, connection: Connection, pairs: Sequence[tuple[str, str]], max_queued: int
    ) -> None:
        """End a batch written on assumptions (:attr:`rail.store.db.Dialect.assumes`):
        fail its transaction with an error whose ``sqlstate`` is :data:`ASSUMED_WRONG`
        if a ``(client, normalized address)`` of ``pairs`` is suppressed or more than
        ``max_queued`` messages are pending."""
        ...

    def lost(self, connection: Connection) -> bool:
        """Whether ``connection`` can no longer be used (a new one is needed)."""
        ...
