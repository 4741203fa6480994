"""Work a SQLite queue still holds when its node starts on PostgreSQL.

The queue is not copied when a node moves to ``storage.backend: postgresql``: mail it
accepted and has not finished would sit in ``data_dir/queue/queue.sqlite3`` for good, while
its senders were told it was queued. So such a start is refused, naming the file and what
it holds, until the queue is drained (started once more on SQLite) or the file moved away
by an operator who means to drop it. Read before the reactor runs, as the store is opened.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import attrs

from rail.store.model import StoreUnavailableError

__all__ = ["Leftover", "left_in", "refuse_leftover"]

QUEUE_FILE = "queue.sqlite3"

# Each table's pending rows; a table an older schema lacks counts none.
_COUNTS = {
    "messages": "SELECT count(DISTINCT message_id) FROM recipients"
    " WHERE status IN ('queued', 'deferred')",
    "webhooks": "SELECT count(*) FROM webhooks WHERE status IN ('queued', 'deferred')",
    "events": "SELECT count(*) FROM events WHERE status IN ('queued', 'deferred')",
}


@attrs.frozen
class Leftover:
    """What is pending in a SQLite queue: outbound messages with a recipient not yet
    final, inbound webhook POSTs and event POSTs not yet made."""

    messages: int = 0
    webhooks: int = 0
    events: int = 0

    def __bool__(self) -> bool:
        return bool(self.messages or self.webhooks or self.events)


def left_in(directory: Path) -> Leftover:
    """What the SQLite queue under ``directory`` holds pending (nothing, without the
    file). Raises sqlite3.Error when the file cannot be read."""
    path = directory / QUEUE_FILE
    if not path.exists():
        return Leftover()
    # Read-only first: the directory may be read-only, or the disk full. Where that cannot
    # read the file (a WAL without its shared-memory file), read-write, which never
    # creates the file and reads a WAL left by a crash with it.
    uri = path.resolve().as_uri()
    try:
        return _count(f"{uri}?mode=ro")
    except sqlite3.Error:
        return _count(f"{uri}?mode=rw")


def _count(uri: str) -> Leftover:
    with closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        counts = {
            name: db.execute(query).fetchone()[0] if _table(query) in tables else 0
            for name, query in _COUNTS.items()
        }
    return Leftover(**counts)


def _table(query: str) -> str:
    return query.split(" FROM ", 1)[1].split()[0]


def refuse_leftover(directory: Path) -> None:
    """Raise StoreUnavailableError, one line saying what to do, unless the SQLite queue
    under ``directory`` is absent or holds nothing pending."""
    path = directory / QUEUE_FILE
    try:
        found = left_in(directory)
    except sqlite3.Error as error:
        raise StoreUnavailableError(
            f"storage.backend is postgresql, and {path} cannot be read to tell whether it"
            f" still holds queued mail ({error}); move it away if its mail is not wanted"
        ) from None
    if not found:
        return
    held = ", ".join(
        f"{count} {what}{'' if count == 1 else 's'}"
        for count, what in (
            (found.messages, "outbound message"),
            (found.webhooks, "inbound webhook POST"),
            (found.events, "event POST"),
        )
        if count
    )
    raise StoreUnavailableError(
        f"storage.backend is postgresql, but {path} still holds work not finished ({held}),"
        " which is not carried over: start once more with storage.backend: sqlite until"
        " it is done (rail queue list; rail queue bounce or delete ends a message; webhook"
        " and event POSTs end when delivered or given up), or move the file away to drop"
        " it (and if this data_dir is a copy of another node's, remove its queue: that"
        " node delivers that mail)"
    )
