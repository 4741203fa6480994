"""The SQLite queue's read thread: status look-ups and figures, never on the writer.

Reads on the writer thread would wait behind group commits and, worse, make acceptances
wait behind them: a flood of ``/stats`` or status requests would delay every ``250``. This
thread has a connection of its own (WAL: readers never block the writer, nor the writer
them) and answers each read from the last committed state. It knows nothing of Deferreds:
results go back through ``deliver`` as ``(token, result)`` pairs, like the writer's.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from queue import SimpleQueue
from typing import Any

from rail.store.model import StoreUnavailableError

__all__ = ["Reader", "open_reader"]

Read = Callable[[sqlite3.Connection], object]
Outcome = tuple[Any, object]


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


class Reader:
    """Owns ``connection`` once started; talk to it through :meth:`submit`."""

    def __init__(self, deliver: Callable[[list[Outcome]], None]) -> None:
        self._deliver = deliver
        self._queue: SimpleQueue[tuple[Read, Any] | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="rail-store-reader", daemon=True)
        self._connection: sqlite3.Connection | None = None

    def start(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self._thread.start()

    def submit(self, read: Read, token: Any) -> None:
        self._queue.put((read, token))

    def stop(self) -> None:
        """Answer what was submitted before, then close the connection and end."""
        self._queue.put(None)

    def join(self) -> None:
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        connection = self._connection
        assert connection is not None
        try:
            while True:
                item = self._queue.get()
                if item is None:  # stop
                    return
                read, token = item
                self._deliver([(token, _answer(read, connection))])
        finally:
            connection.close()


def _answer(read: Read, connection: sqlite3.Connection) -> object:
    """``read``'s result, from one snapshot (a read transaction) of the database."""
    try:
        connection.execute("BEGIN")
        try:
            return read(connection)
        finally:
            connection.execute("COMMIT")
    except sqlite3.Error as error:
        failure = StoreUnavailableError(f"cannot read queue: {error}")
        failure.__cause__ = error
        return failure
    except Exception as error:  # a bug: answer the caller rather than hang it
        return error
