"""The embedded durable queue: :class:`QueueStore` on SQLite, nothing to install.

One database file under ``data_dir/queue`` (:mod:`rail.store.schema`). What is SQLite's
own is here: opening the file for the writer and a read-only connection for the read
thread (none while the writer holds the file in exclusive mode, on a full disk), the free
space of its file system with the disk reserve (:mod:`rail.store.reserve`), and the
pending count, read once at start and then kept by the one writer.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger

from rail.store.db import Connection
from rail.store.lease import LEASE_SECONDS
from rail.store.model import StoreUnavailableError
from rail.store.queuestore import QueueStore
from rail.store.reserve import settle
from rail.store.schema import database_path, open_writable

__all__ = ["SQLiteBackend", "SQLiteStore", "count_pending", "open_reader"]

_log = Logger()


def count_pending(connection: Connection) -> int:
    """Messages with a recipient still to deliver: what ``max_queued`` limits."""
    row = connection.execute(
        "SELECT count(DISTINCT message_id) FROM recipients WHERE status IN ('queued', 'deferred')"
    ).fetchone()
    return int(row[0])


def open_reader(path: Path) -> sqlite3.Connection | None:
    """A read-only connection to the queue database at ``path`` for the read thread, or
    None when the writer holds it in exclusive locking mode (full disk) or it cannot be
    opened: reads then go to the writer, as before."""
    try:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error:
        return None
    try:
        connection.execute("PRAGMA query_only=ON")
        connection.execute("PRAGMA busy_timeout=1000")
        connection.execute("SELECT count(*) FROM tally").fetchone()
    except sqlite3.Error:
        connection.close()
        return None
    return connection


class SQLiteBackend:
    """The queue file in ``directory``, with ``reserve_bytes`` of disk reserve beside it."""

    shared = False

    def __init__(self, directory: Path, *, min_free_bytes: int, reserve_bytes: int = 0) -> None:
        self.directory = directory
        self._min_free_bytes = min_free_bytes
        self._reserve_bytes = reserve_bytes
        self._exclusive = False

    def describe(self) -> str:
        return str(database_path(self.directory))

    def connect(self) -> Connection:
        connection = open_writable(self.directory)
        try:
            mode = connection.execute("PRAGMA locking_mode").fetchone()[0]
        except sqlite3.Error as error:
            connection.close()
            raise StoreUnavailableError(
                f"{self.describe()}: unusable queue database: {error}"
            ) from error
        self._exclusive = mode == "exclusive"
        return connection

    def connect_reader(self) -> Connection | None:
        if self._exclusive:
            return None
        return open_reader(database_path(self.directory))

    def pending(self, connection: Connection) -> int:
        return count_pending(connection)

    def pending_later(self, connection: Connection) -> Callable[[], int]:
        count = count_pending(connection)  # in process: no round trip to save
        return lambda: count

    def check_batch(
        self, connection: Connection, pairs: Sequence[tuple[str, str]], max_queued: int
    ) -> None:
        raise NotImplementedError("SQLite batches ask: in process, asking costs no round trip")

    def lost(self, connection: Connection) -> bool:
        return False  # a file does not go away: its errors are answered as they come

    def free_bytes(self) -> int:
        """Free space for this batch, after freeing or making the disk reserve as the
        free space asks (:mod:`rail.store.reserve`)."""
        stats = os.statvfs(self.directory)
        free = stats.f_bavail * stats.f_frsize
        try:
            action = settle(self.directory, self._reserve_bytes, self._min_free_bytes, free)
        except OSError as error:
            _log.error("cannot free the disk reserve: {error}", error=str(error))
            return free
        if action is None:
            return free
        if action == "released":
            _log.warn(
                "disk nearly full: freed the {size}-byte reserve so the queue can keep"
                " recording deliveries; new mail is refused until free space is back",
                size=self._reserve_bytes,
            )
        else:
            _log.info("disk reserve of {size} bytes allocated again", size=self._reserve_bytes)
        stats = os.statvfs(self.directory)
        return stats.f_bavail * stats.f_frsize


class SQLiteStore(QueueStore):
    """The SQLite queue under one directory. Build it with :meth:`open`."""

    def __init__(
        self,
        reactor: IReactorFromThreads,
        directory: Path,
        *,
        max_queued: int,
        min_free_bytes: int,
        reserve_bytes: int = 0,
        lease: float = LEASE_SECONDS,
        node: str | None = None,
    ) -> None:
        """``lease`` and ``node``: see :class:`QueueStore` (SQLite's claims take no leases
        unless ``node`` is given, as tests do)."""
        self.directory = directory
        backend = SQLiteBackend(
            directory, min_free_bytes=min_free_bytes, reserve_bytes=reserve_bytes
        )
        super().__init__(
            reactor,
            backend,
            max_queued=max_queued,
            min_free_bytes=min_free_bytes,
            lease=lease,
            node=node,
        )

    @classmethod
    def open(
        cls,
        directory: Path,
        reactor: IReactorFromThreads,
        *,
        max_queued: int,
        min_free_bytes: int,
        reserve_bytes: int = 0,
        lease: float = LEASE_SECONDS,
        node: str | None = None,
    ) -> SQLiteStore:
        """Create or check the queue in ``directory`` (created with mode 0700); call
        :meth:`start` before the store answers anything.

        Synchronous, for start-up before the reactor runs. Raises
        :class:`StoreUnavailableError` with a one-line message naming the database file
        when it is corrupt, unreadable or not writable. No connection or thread is kept,
        so twistd may fork (daemonize) between ``open`` and ``start``.
        """
        connection = open_writable(directory)
        try:
            count_pending(connection)  # reads the tables the writer needs: fail now
        except sqlite3.Error as error:
            path = database_path(directory)
            raise StoreUnavailableError(f"{path}: unusable queue database: {error}") from error
        finally:
            connection.close()
        return cls(
            reactor,
            directory,
            max_queued=max_queued,
            min_free_bytes=min_free_bytes,
            reserve_bytes=reserve_bytes,
            lease=lease,
            node=node,
        )
