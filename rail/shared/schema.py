"""The shared state's tables in PostgreSQL, their migrations and the connections to them.

The tables live in a schema of their own, ``rail_shared``, so that their names cannot clash
with the queue's (in ``public``), and every connection made here sets ``search_path`` to it:
the registry's SQL is the same text on SQLite and PostgreSQL (:mod:`rail.pki.registry`).
The schema is versioned in ``rail_shared.schema_version``; nodes starting at once migrate
one at a time under an advisory lock, and a node older than the schema refuses to start.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from rail.pki.files import PKIError
from rail.store.db import DATABASE_ERRORS
from rail.store.pg import PGConnection, connect

__all__ = [
    "CHANNEL",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Connections",
    "SchemaError",
    "bump",
    "open_shared",
]

SCHEMA = "rail_shared"
CHANNEL = "rail_shared"
"""The LISTEN/NOTIFY channel; the payload is the topic that changed."""

SCHEMA_VERSION = 1

_MIGRATION_LOCK = 0x7261696C0001
"""``pg_advisory_xact_lock`` key under which the schema is made or migrated."""

_MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE certificates (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY,  -- the order of issue, as SQLite's rowid
    serial TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    senders TEXT NOT NULL,
    webhook TEXT,
    key_type TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    revoked_at TEXT,
    fingerprint_sha256 TEXT NOT NULL UNIQUE,
    pem BYTEA NOT NULL,
    role TEXT NOT NULL DEFAULT 'client'
);
CREATE INDEX certificates_by_name ON certificates (name);
CREATE TABLE client_events (
    name TEXT PRIMARY KEY,
    types TEXT NOT NULL,
    url TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE webhook_secrets (
    client TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    secret BYTEA,
    retires_at DOUBLE PRECISION,
    PRIMARY KEY (client, created_at)
);
CREATE TABLE blobs (
    name TEXT PRIMARY KEY,            -- ca.crt, ca.key, crl.pem, webhook.key, ...
    data BYTEA NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE versions (
    topic TEXT PRIMARY KEY,           -- what changed: revocations, certificates, ...
    version BIGINT NOT NULL
)
""",
}


class SchemaError(PKIError):
    """The shared schema cannot be used (newer than this Rail); a PKIError so that start-up
    and the CLI report it as one line, as every failure to reach the PKI state."""


def _migrate(connection: PGConnection) -> None:
    connection.execute("BEGIN")
    try:
        connection.execute(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = connection.execute("SELECT version FROM schema_version").fetchone()
        version = 0 if row is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"the shared database's schema {SCHEMA} is at version {version}, newer than"
                f" this Rail understands ({SCHEMA_VERSION}); upgrade Rail"
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step].split(";"):
                if statement.strip():
                    connection.execute(statement)
        if row is None:
            connection.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif version < SCHEMA_VERSION:
            connection.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def open_shared(dsn: str, *, migrate: bool = True) -> PGConnection:
    """A connection whose ``search_path`` is the shared schema, migrated first if asked."""
    connection = connect(dsn, application_name="rail-shared")
    try:
        connection.execute(f"SET search_path = {SCHEMA}")
        if migrate:
            _migrate(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def bump(connection: Any, topic: str) -> None:
    """Record, in the caller's transaction, that ``topic`` changed: its version goes up
    (what the periodic reads compare) and the other nodes are notified when it commits
    (PostgreSQL delivers a transaction's notifications at its commit, never before)."""
    connection.execute(
        "INSERT INTO versions (topic, version) VALUES (?, 1)"
        " ON CONFLICT (topic) DO UPDATE SET version = versions.version + 1",
        (topic,),
    )
    connection.execute("SELECT pg_notify(?, ?)", (CHANNEL, topic))


class Connections:
    """A few idle connections kept for reuse by the threads that read the shared state
    every second (connecting each time would cost a handshake per read). The schema is
    migrated by the first connection only. Thread-safe."""

    def __init__(self, dsn: str, keep: int = 4) -> None:
        self.dsn = dsn
        self._keep = keep
        self._idle: list[PGConnection] = []
        self._lock = threading.Lock()
        self._migrated = False

    def take(self) -> PGConnection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            migrate = not self._migrated
        connection = open_shared(self.dsn, migrate=migrate)
        self._migrated = True
        return connection

    def give(self, connection: PGConnection) -> None:
        """Take ``connection`` back; one that broke or was left in a transaction is closed."""
        raw = connection.raw
        usable = not raw.closed and not raw.broken and not connection.in_transaction
        with self._lock:
            if usable and len(self._idle) < self._keep:
                self._idle.append(connection)
                return
        try:
            connection.close()
        except DATABASE_ERRORS:
            pass

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            try:
                connection.close()
            except psycopg.Error:
                pass
