"""The SQLite queue's file, schema and connection settings, shared by the store and inspect.

One database file under the queue directory. WAL lets other processes (``rail dkim``'s
look at pending mail) read while the server writes; ``synchronous=FULL`` makes every
COMMIT an fsync, which is what "accepted" promises. ``PRAGMA user_version`` carries the
schema version so a later Rail can migrate.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from twisted.logger import Logger

from rail.diskfull import is_disk_full
from rail.store.admin import ADMIN_SCHEMA, MIGRATE_5_TO_6
from rail.store.bouncereports import ASYNC_REPORTS_SCHEMA
from rail.store.emit import EMISSION_SCHEMA
from rail.store.events import EVENT_JOBS_SCHEMA, EVENTS_SCHEMA
from rail.store.inbound import INBOUND_SCHEMA
from rail.store.lease import LEASE_SCHEMA
from rail.store.messagemeta import MESSAGE_META_SCHEMA
from rail.store.model import StoreUnavailableError
from rail.store.purge import MIGRATE_4_TO_5, RETENTION_SCHEMA
from rail.store.sendcheck import SEND_CHECK_SCHEMA
from rail.store.suppressions import SUPPRESSIONS_SCHEMA
from rail.store.tlsreports import TLS_REPORTS_SCHEMA

__all__ = [
    "COMPACT_AT_START",
    "DATABASE_NAME",
    "SCHEMA_VERSION",
    "database_path",
    "open_readonly",
    "open_writable",
]

_log = Logger()

DATABASE_NAME = "queue.sqlite3"
# An existing database of at most this size made without incremental vacuum is rebuilt
# (VACUUM) with it at start-up; a larger one is left as it is (see docs/delivery.md, "Retention").
COMPACT_AT_START = 64 * 1024 * 1024
# The WAL file is cut back to this size after a checkpoint, so one burst does not keep it large.
_JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024

# Due recipients are found through a partial index over the pending ones ordered by
# next_attempt_at, so the scheduler reads the next few in order without sorting (or holding)
# a million queued rows; final rows leave the index. ``data`` is the last column of ``messages`` so
# scans that skip it never read its overflow pages.
#
# Version 1 (issue 3) had no remote_mta and indexed (status, next_attempt_at); version 2
# (issue 4) had no inbound spool; version 3 had no ``failed`` recipient status (issue 14:
# quarantine). SQLite cannot change a CHECK constraint in place, so 3 to 4 copies the
# recipients table (the messages and their data are not touched), once, at start-up.
# Version 4 had no retention bookkeeping (issue 15): 4 to 5 adds it, filled from the
# recipients and webhooks tables (small rows; the messages and their data are not read).
# Version 5 had no ``deleted`` status nor the admin tables (issue 15): 5 to 6 copies the
# recipients table again, and re-creates its indexes and retention's triggers on it.
# Version 6 had no event jobs (issue 16); version 7 no message metadata nor suppression list;
# version 8 no asynchronous bounce reports; version 9 no retention index nor tally of event
# jobs; version 10 no record of the recipients a send found suppressed; version 11 no
# TLS-RPT counters; version 12 no index of the deferral events (rail.store.emit); version 13
# no lease columns on the job tables (rail.store.lease: unused by SQLite's own claims, kept so
# the same SQL runs on both engines).
_MIGRATE_1_TO_2 = """
ALTER TABLE recipients ADD COLUMN remote_mta TEXT;
DROP INDEX recipients_due;
CREATE INDEX recipients_pending ON recipients (next_attempt_at)
    WHERE status IN ('queued', 'deferred');
"""
_MIGRATE_3_TO_4 = """
CREATE TABLE recipients_4 (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('queued', 'deferred', 'sent', 'bounced', 'failed')),
    attempts INTEGER NOT NULL,
    next_attempt_at REAL,
    last_reply TEXT,
    updated_at REAL NOT NULL,
    remote_mta TEXT,
    PRIMARY KEY (message_id, idx)
) WITHOUT ROWID;
INSERT INTO recipients_4 (message_id, idx, address, status, attempts, next_attempt_at,
    last_reply, updated_at, remote_mta)
    SELECT message_id, idx, address, status, attempts, next_attempt_at, last_reply,
        updated_at, remote_mta FROM recipients;
DROP TABLE recipients;
ALTER TABLE recipients_4 RENAME TO recipients;
CREATE INDEX recipients_pending ON recipients (next_attempt_at)
    WHERE status IN ('queued', 'deferred');
"""
_SCHEMA = (
    """
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    sender TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('smtp', 'api')),
    smtputf8 INTEGER NOT NULL,
    eight_bit INTEGER NOT NULL,
    received_at REAL NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE recipients (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('queued', 'deferred', 'sent', 'bounced', 'failed', 'deleted')),
    attempts INTEGER NOT NULL,
    next_attempt_at REAL,
    last_reply TEXT,
    updated_at REAL NOT NULL,
    remote_mta TEXT,
    PRIMARY KEY (message_id, idx)
) WITHOUT ROWID;
CREATE INDEX recipients_pending ON recipients (next_attempt_at)
    WHERE status IN ('queued', 'deferred');
CREATE TABLE idempotency (
    client TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    message_id TEXT NOT NULL,
    recipients INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (client, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_created ON idempotency (created_at);
"""
    + INBOUND_SCHEMA
    + RETENTION_SCHEMA
    + ADMIN_SCHEMA
    + EVENTS_SCHEMA
    + MESSAGE_META_SCHEMA
    + SUPPRESSIONS_SCHEMA
    + ASYNC_REPORTS_SCHEMA
    + EVENT_JOBS_SCHEMA
    + SEND_CHECK_SCHEMA
    + TLS_REPORTS_SCHEMA
    + EMISSION_SCHEMA
    + LEASE_SCHEMA
)

# Each version's step from the one before it; a database at version v runs every later step,
# in order, in one transaction. A new version adds its step here and its tables to _SCHEMA.
_MIGRATIONS: dict[int, str] = {
    2: _MIGRATE_1_TO_2,
    3: INBOUND_SCHEMA,
    4: _MIGRATE_3_TO_4,
    5: MIGRATE_4_TO_5,
    6: MIGRATE_5_TO_6,
    7: EVENTS_SCHEMA,
    8: MESSAGE_META_SCHEMA + SUPPRESSIONS_SCHEMA,
    9: ASYNC_REPORTS_SCHEMA,
    10: EVENT_JOBS_SCHEMA,
    11: SEND_CHECK_SCHEMA,
    12: TLS_REPORTS_SCHEMA,
    13: EMISSION_SCHEMA,
    14: LEASE_SCHEMA,
}
SCHEMA_VERSION = max(_MIGRATIONS)


def database_path(directory: Path) -> Path:
    """Where the queue database of ``directory`` lives."""
    return directory / DATABASE_NAME


def open_writable(directory: Path) -> sqlite3.Connection:
    """Open (creating if needed) the queue database in ``directory`` for the one writer.

    Creates ``directory`` with mode 0700 and, when the file is new, fsyncs the directory so
    the file's name is as durable as its contents. Raises :class:`StoreUnavailableError`
    with a one-line message naming the file when it cannot be used.

    On a full disk SQLite cannot create the shared-memory file of a WAL database; the
    database is then opened in exclusive locking mode, which keeps that index in the
    process's memory (see ``docs/delivery.md``, "Full disk"): the server can read and
    deliver its queue, while other processes cannot read it meanwhile.
    """
    path = database_path(directory)
    try:
        return _open_writable(directory, path, exclusive=False)
    except StoreUnavailableError as error:
        if not path.exists() or not is_disk_full(error):
            raise
        problem = str(error)
    connection = _open_writable(directory, path, exclusive=True)
    _log.warn(
        "disk full: queue opened in exclusive locking mode ({problem}); other processes cannot"
        " read it while Rail runs, and Rail leaves this mode at its next start with free space",
        problem=problem,
    )
    return connection


def _open_writable(directory: Path, path: Path, exclusive: bool) -> sqlite3.Connection:
    try:
        if not directory.exists():
            directory.mkdir(mode=0o700, parents=True)
            directory.chmod(0o700)  # mkdir's mode is filtered by the umask
        created = not path.exists()
        # The connection is opened here and then used only by the writer thread.
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if exclusive:
            connection.execute("PRAGMA locking_mode=EXCLUSIVE")
    except (OSError, sqlite3.Error) as error:
        raise StoreUnavailableError(f"{path}: cannot open queue database: {error}") from error
    try:
        _prepare(connection, path)
        if created:
            _fsync_directory(directory)
    except OSError as error:
        connection.close()
        raise StoreUnavailableError(f"{path}: cannot sync queue directory: {error}") from error
    except BaseException:
        connection.close()
        raise
    return connection


def open_readonly(directory: Path) -> sqlite3.Connection:
    """Open the queue database of ``directory`` read-only, alongside a running server.

    On a full disk (no room for the shared-memory file) the database is read through an
    exclusive-mode connection instead, which fails at once ("database is locked") while
    a server holds the queue open that way.
    """
    path = database_path(directory)
    if not path.exists():
        raise StoreUnavailableError(f"{path}: no queue database")
    try:
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as error:
            connection.close()
            if not is_disk_full(error):
                raise
            connection = sqlite3.connect(path, timeout=0)
            connection.execute("PRAGMA locking_mode=EXCLUSIVE")
            version = connection.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as error:
        raise StoreUnavailableError(f"{path}: cannot read queue database: {error}") from error
    if version != SCHEMA_VERSION:
        connection.close()
        raise StoreUnavailableError(f"{path}: unsupported queue schema version {version}")
    return connection


def _prepare(connection: sqlite3.Connection, path: Path) -> None:
    try:
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StoreUnavailableError(f"{path}: cannot use WAL mode (got {mode!r})")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=5000")
        connection.execute(f"PRAGMA journal_size_limit={_JOURNAL_SIZE_LIMIT}")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            _create(connection, path)
        elif 0 < version < SCHEMA_VERSION:
            steps = range(version + 1, SCHEMA_VERSION + 1)
            _run_script(connection, "".join(_MIGRATIONS[step] for step in steps))
        elif version != SCHEMA_VERSION:
            raise StoreUnavailableError(f"{path}: unsupported queue schema version {version}")
        # Fail now, not on the first message, if the file is damaged or read-only.
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        connection.execute("COMMIT")
    except sqlite3.Error as error:
        raise StoreUnavailableError(f"{path}: unusable queue database: {error}") from error
    _incremental_vacuum(connection, path)


def _incremental_vacuum(connection: sqlite3.Connection, path: Path) -> None:
    """Switch a database made before version 5 to incremental vacuum, if it is small.

    SQLite can only turn ``auto_vacuum`` on by rebuilding the whole file (``VACUUM``),
    which needs as much free space again and, for a large queue, minutes: that is done here
    (start-up, before the reactor runs) only up to :data:`COMPACT_AT_START`. A larger
    database keeps working as before: retention frees its pages, which new mail reuses, so
    the file stops growing, but it does not shrink until the operator runs ``VACUUM`` with
    Rail stopped (docs/delivery.md, "Retention").
    """
    if connection.execute("PRAGMA auto_vacuum").fetchone()[0] != 0:
        return
    size = path.stat().st_size
    if size > COMPACT_AT_START:
        _log.info(
            "queue database {path} ({size} bytes) predates incremental vacuum: purged space"
            " is reused but not returned to the file system until it is compacted with Rail"
            " stopped (docs/delivery.md, Retention)",
            path=str(path),
            size=size,
        )
        return
    try:
        connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
        connection.execute("VACUUM")
    except sqlite3.Error as error:
        _log.warn("cannot compact queue database {path}: {error}", path=str(path), error=str(error))


def _create(connection: sqlite3.Connection, path: Path) -> None:
    tables = connection.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
    if tables:
        raise StoreUnavailableError(f"{path}: not a Rail queue database (no schema version)")
    # Only possible before the first table exists; freed pages then go back to the file
    # system in the small steps of rail.store.purge.
    connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
    _run_script(connection, _SCHEMA)


def _run_script(connection: sqlite3.Connection, script: str) -> None:
    """Run ``script`` and set the current schema version, all in one transaction."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement in _statements(script):
            connection.execute(statement)
        connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """The statements of ``script``; a trigger's body keeps its inner semicolons."""
    statements: list[str] = []
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending)
            pending = ""
    return statements


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
