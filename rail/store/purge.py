"""Retention on the SQLite queue: what is final, when, and purging it in small steps.

A message is *finished* when nothing more will be done with it: every recipient of an
outbound message is ``sent``, ``bounced``, ``failed`` or ``deleted`` (an operator's
delete or bounce finishes it too, :mod:`rail.store.admin`); every webhook job of an inbound
message is ``delivered`` or ``failed``. The moment it finishes, a row of the ``finished``
table records it (in the same transaction), so retention finds its work through an index
on ``finished_at`` and never scans the messages. After ``storage.retention.body`` the
message's bytes are dropped (its row and recipients stay, for status look-ups); after
``storage.retention.record`` everything of it is deleted.

The ``tally`` table holds the number of recipients and webhook jobs in each status, kept
by triggers on every insert, status change and delete, so ``/stats`` and ``/metrics`` read
a handful of rows instead of counting a table.

These functions run on the writer thread (:mod:`rail.store.writer`). Each purge step does
at most ``limit`` messages of each kind in one short transaction, then gives up to
``vacuum_pages`` free pages back to the file system (``PRAGMA incremental_vacuum``) in
another, so acceptances wait for at most one small step.
"""

from __future__ import annotations

import sqlite3
from typing import Literal

from twisted.logger import Logger

from rail.store.db import Connection, dialect_of
from rail.store.events import purge_events
from rail.store.integrity import damaged_row
from rail.store.model import Purged

__all__ = [
    "MIGRATE_4_TO_5",
    "RECIPIENT_RETENTION",
    "RETENTION_SCHEMA",
    "mark_finished",
    "purge_step",
]

# Counts by status, and a message that becomes pending again (an operator's retry of a
# final recipient) leaves ``finished``. An upsert, so a status added later is counted too.
_TALLY_TRIGGERS = """
CREATE TRIGGER {table}_tally_insert AFTER INSERT ON {table} BEGIN
    INSERT INTO tally (queue, status, n) VALUES ('{queue}', NEW.status, 1)
        ON CONFLICT (queue, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER {table}_tally_delete AFTER DELETE ON {table} BEGIN
    UPDATE tally SET n = n - 1 WHERE queue = '{queue}' AND status = OLD.status;
END;
CREATE TRIGGER {table}_tally_update AFTER UPDATE OF status ON {table}
    WHEN OLD.status IS NOT NEW.status BEGIN
    UPDATE tally SET n = n - 1 WHERE queue = '{queue}' AND status = OLD.status;
    INSERT INTO tally (queue, status, n) VALUES ('{queue}', NEW.status, 1)
        ON CONFLICT (queue, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER {table}_unfinished AFTER UPDATE OF status ON {table}
    WHEN NEW.status IN ('queued', 'deferred') AND OLD.status NOT IN ('queued', 'deferred')
    BEGIN
    DELETE FROM finished WHERE queue = '{queue}' AND id = NEW.message_id;
END;
"""

# ``recipients_pending_message`` finds the oldest pending message (ids are ULIDs, so they
# sort by acceptance time) in O(log n): what keeps old DKIM keys published.
_PENDING_MESSAGE_INDEX = """
CREATE INDEX recipients_pending_message ON recipients (message_id)
    WHERE status IN ('queued', 'deferred');
"""

# What retention keeps on the recipients table itself: a migration that copies the table
# (which drops its indexes and triggers) runs this again on the copy.
RECIPIENT_RETENTION = _PENDING_MESSAGE_INDEX + _TALLY_TRIGGERS.format(
    table="recipients", queue="outbound"
)

RETENTION_SCHEMA = (
    """
CREATE TABLE finished (
    queue TEXT NOT NULL CHECK (queue IN ('outbound', 'inbound')),
    id TEXT NOT NULL,
    finished_at REAL NOT NULL,
    body_purged_at REAL,
    PRIMARY KEY (queue, id)
) WITHOUT ROWID;
CREATE INDEX finished_body ON finished (finished_at) WHERE body_purged_at IS NULL;
CREATE INDEX finished_record ON finished (finished_at);
CREATE TABLE tally (
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (queue, status)
) WITHOUT ROWID;
INSERT INTO tally (queue, status, n) VALUES
    ('outbound', 'queued', 0), ('outbound', 'deferred', 0), ('outbound', 'sent', 0),
    ('outbound', 'bounced', 0), ('outbound', 'failed', 0),
    ('inbound', 'queued', 0), ('inbound', 'deferred', 0), ('inbound', 'delivered', 0),
    ('inbound', 'failed', 0);
"""
    + RECIPIENT_RETENTION
    + _TALLY_TRIGGERS.format(table="webhooks", queue="inbound")
)

# From version 4: the same, filled from what is stored. Reads the recipients and webhooks
# tables once each (small rows); the messages and their data are not touched.
_BACKFILL = """
INSERT OR REPLACE INTO tally (queue, status, n)
    SELECT 'outbound', status, count(*) FROM recipients GROUP BY status;
INSERT OR REPLACE INTO tally (queue, status, n)
    SELECT 'inbound', status, count(*) FROM webhooks GROUP BY status;
INSERT INTO finished (queue, id, finished_at)
    SELECT 'outbound', message_id, max(updated_at) FROM recipients GROUP BY message_id
    HAVING sum(status IN ('queued', 'deferred')) = 0;
INSERT INTO finished (queue, id, finished_at)
    SELECT 'inbound', message_id, max(updated_at) FROM webhooks GROUP BY message_id
    HAVING sum(status IN ('queued', 'deferred')) = 0;
"""
MIGRATE_4_TO_5 = RETENTION_SCHEMA + _BACKFILL

_log = Logger()

Queue = Literal["outbound", "inbound"]
_DELETE = {
    "outbound": "DELETE FROM messages WHERE id = ?",
    "inbound": "DELETE FROM inbound WHERE id = ?",
}
_DROP_BODY = {
    "outbound": "UPDATE messages SET data = ? WHERE id = ?",
    "inbound": "UPDATE inbound SET data = ? WHERE id = ?",
}


def mark_finished(connection: Connection, queue: Queue, message_id: str, when: float) -> None:
    """Record that ``message_id`` of ``queue`` finished at ``when`` (once: a later call
    for the same message changes nothing)."""
    connection.execute(
        "INSERT INTO finished (queue, id, finished_at) VALUES (?, ?, ?)"
        " ON CONFLICT (queue, id) DO NOTHING",
        (queue, message_id, when),
    )


def purge_step(
    connection: Connection,
    *,
    now: float,
    body_before: float,
    record_before: float,
    keys_before: float,
    limit: int,
    vacuum_pages: int,
) -> Purged:
    """One step of retention at ``now``: delete up to ``limit`` messages finished before
    ``record_before``, drop the bytes of up to ``limit`` finished before ``body_before``,
    delete up to ``limit`` idempotency keys created before ``keys_before`` and up to
    ``limit`` event jobs final before ``record_before`` (one transaction), then run
    ``PRAGMA incremental_vacuum`` for up to ``vacuum_pages`` pages (its own transaction,
    only when the database has incremental vacuum). The caller holds no transaction."""
    connection.execute(dialect_of(connection).begin)
    try:
        records = _purge_records(connection, record_before, limit)
        bodies = _purge_bodies(connection, body_before, now, limit)
        keys = connection.execute(
            "DELETE FROM idempotency WHERE (client, key) IN (SELECT client, key FROM idempotency"
            " WHERE created_at < ? ORDER BY created_at LIMIT ?)",
            (keys_before, limit),
        ).rowcount
        events = purge_events(connection, record_before, limit)
        connection.execute("COMMIT")
    except _DamagedRowError as damaged:
        connection.execute("ROLLBACK")
        _set_aside(connection, damaged, now)
        return Purged(more=True)  # the next step does this one's work again
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    pages, free = _vacuum(connection, vacuum_pages)
    more = limit in (records, bodies, keys, events) or free > 0
    return Purged(bodies=bodies, records=records, keys=keys, pages=pages, more=more, events=events)


def _purge_records(connection: Connection, before: float, limit: int) -> int:
    rows = connection.execute(
        "SELECT queue, id FROM finished WHERE finished_at < ? ORDER BY finished_at LIMIT ?",
        (before, limit),
    ).fetchall()
    for queue, message_id in rows:
        # ON DELETE CASCADE removes the recipients or webhook jobs (and the triggers
        # take them off the tally).
        _damage_tolerant(connection, _DELETE[queue], (message_id,), queue, message_id, "record")
        connection.execute("DELETE FROM finished WHERE queue = ? AND id = ?", (queue, message_id))
    return len(rows)


def _purge_bodies(connection: Connection, before: float, now: float, limit: int) -> int:
    rows = connection.execute(
        "SELECT queue, id FROM finished WHERE body_purged_at IS NULL AND finished_at < ?"
        " ORDER BY finished_at LIMIT ?",
        (before, limit),
    ).fetchall()
    for queue, message_id in rows:
        _damage_tolerant(
            connection, _DROP_BODY[queue], (b"", message_id), queue, message_id, "body"
        )
        connection.execute(
            "UPDATE finished SET body_purged_at = ? WHERE queue = ? AND id = ?",
            (now, queue, message_id),
        )
    return len(rows)


class _DamagedRowError(Exception):
    """SQLite reported the row of ``message_id`` damaged while retention changed it."""

    def __init__(self, queue: Queue, message_id: str, what: str, error: sqlite3.Error) -> None:
        super().__init__(str(error))
        self.queue = queue
        self.message_id = message_id
        self.what = what


def _damage_tolerant(
    connection: Connection,
    statement: str,
    params: tuple[object, ...],
    queue: Queue,
    message_id: str,
    what: str,
) -> None:
    """Run ``statement`` for ``message_id``; :class:`_DamagedRowError` if SQLite finds the
    row damaged (a broken overflow chain, typically a message quarantined for it)."""
    try:
        connection.execute(statement, params)
    except sqlite3.DatabaseError as error:
        if damaged_row(error) is None:
            raise
        raise _DamagedRowError(queue, message_id, what, error) from error


def _set_aside(connection: Connection, damaged: _DamagedRowError, now: float) -> None:
    """Leave a damaged row as it is, with a log line, but take it off retention's list so
    that it cannot stop retention for good. SQLite refuses further writes in a transaction
    that met damage, so this is a transaction of its own."""
    _log.error(
        "retention cannot delete the {what} of {queue} message {id}, its row is damaged"
        " ({error}); it is left in the queue database",
        what=damaged.what,
        queue=damaged.queue,
        id=damaged.message_id,
        error=str(damaged),
    )
    connection.execute(dialect_of(connection).begin)
    try:
        if damaged.what == "record":
            connection.execute(
                "DELETE FROM finished WHERE queue = ? AND id = ?",
                (damaged.queue, damaged.message_id),
            )
        else:
            connection.execute(
                "UPDATE finished SET body_purged_at = ? WHERE queue = ? AND id = ?",
                (now, damaged.queue, damaged.message_id),
            )
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _vacuum(connection: Connection, pages: int) -> tuple[int, int]:
    """Give up to ``pages`` free pages back; (pages given back, free pages left)."""
    if not isinstance(connection, sqlite3.Connection) or pages <= 0:
        return 0, 0  # PostgreSQL's autovacuum looks after its free space
    if connection.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
        return 0, 0
    before = connection.execute("PRAGMA freelist_count").fetchone()[0]
    if before:
        # executescript steps the pragma to its end; execute() would free one page only.
        connection.executescript(f"PRAGMA incremental_vacuum({int(pages)});")
    after = connection.execute("PRAGMA freelist_count").fetchone()[0]
    return before - after, after
