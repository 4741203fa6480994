"""The store's read thread: status look-ups and figures, never on the writer.

Reads on the writer thread would wait behind group commits and, worse, make acceptances
wait behind them: a flood of ``/stats`` or status requests would delay every ``250``. This
thread has a connection of its own (SQLite's WAL and PostgreSQL's MVCC: readers never
block the writer, nor the writer them) and answers each read from one snapshot of the
last committed state. A lost connection (PostgreSQL) fails the read that met it and is
made again for the next one. It knows nothing of Deferreds: results go back through
``deliver`` as ``(token, result)`` pairs, like the writer's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

from rail.store.db import DATABASE_ERRORS, Connection, dialect_of
from rail.store.model import StoreUnavailableError

__all__ = ["Read", "Reader"]

Read = Callable[[Connection], object]
Outcome = tuple[Any, object]


def _never_lost(connection: Connection) -> bool:
    return False


class Reader:
    """Owns its connection once started; talk to it through :meth:`submit`.

    ``reconnect`` makes a new connection when ``lost(connection)`` says the current one
    cannot be used any more (it raises StoreUnavailableError when it cannot)."""

    def __init__(
        self,
        deliver: Callable[[list[Outcome]], None],
        *,
        lost: Callable[[Connection], bool] = _never_lost,
        reconnect: Callable[[], Connection] | None = None,
    ) -> None:
        self._deliver = deliver
        self._lost = lost
        self._reconnect = reconnect
        self._queue: SimpleQueue[tuple[Read, Any] | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="rail-store-reader", daemon=True)
        self._connection: Connection | None = None

    def start(self, connection: Connection) -> None:
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
        try:
            while True:
                item = self._queue.get()
                if item is None:  # stop
                    return
                read, token = item
                self._deliver([(token, self._answer(read))])
        finally:
            if self._connection is not None:
                self._connection.close()

    def _answer(self, read: Read) -> object:
        if self._connection is None:
            if self._reconnect is None:
                return StoreUnavailableError("queue store closed")
            try:
                self._connection = self._reconnect()
            except StoreUnavailableError as error:
                return error
        connection = self._connection
        answer = _answer(read, connection)
        if isinstance(answer, StoreUnavailableError) and self._lost(connection):
            self._connection = None
            try:
                connection.close()
            except DATABASE_ERRORS:
                pass
        return answer


def _answer(read: Read, connection: Connection) -> object:
    """``read``'s result, from one snapshot (a read transaction) of the database."""
    try:
        connection.execute(dialect_of(connection).begin_read)
        try:
            return read(connection)
        finally:
            connection.execute("COMMIT")
    except DATABASE_ERRORS as error:
        failure = StoreUnavailableError(f"cannot read queue: {error}")
        failure.__cause__ = error
        return failure
    except Exception as error:  # a bug: answer the caller rather than hang it
        return error
