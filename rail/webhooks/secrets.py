"""Rotatable webhook secrets: each client's ``v1`` (HMAC) secrets, in the registry.

A client that never rotated has one secret, derived from Rail's webhook signing key and
its name (:meth:`rail.webhooks.key.WebhookKey.client_secret`): nothing is stored, and
applications configured with it keep verifying. ``rail certs webhook-secret rotate NAME``
(or the admin API) makes a new random secret for the client; the one it replaces keeps
signing too until ``overlap`` has passed, so an application can switch without losing a
webhook (Standard Webhooks allows several space-separated signatures), then only the new
one signs.

Rows live in the ``webhook_secrets`` table of the registry database (``registry.sqlite3``),
made here if missing: a table of its own, so the registry's schema version is untouched.
A row with a null ``secret`` stands for the derived secret (during the overlap of the
first rotation). Synchronous, like :mod:`rail.pki.registry`: the CLI calls it, the server
in a worker thread.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from rail.pki.files import PKIError
from rail.pki.registry import RegistryError, registry_path
from rail.pki.source import RegistrySource

__all__ = [
    "DEFAULT_OVERLAP",
    "SECRETS_SCHEMA",
    "ClientSecret",
    "Rotation",
    "UnknownClientError",
    "read_secrets",
    "rotate_secret",
]

DEFAULT_OVERLAP = 24 * 3600.0
"""How long the replaced secret keeps signing after a rotation, unless told otherwise."""

SECRETS_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_secrets (
    client TEXT NOT NULL,
    created_at REAL NOT NULL,
    secret BLOB,
    retires_at REAL,
    PRIMARY KEY (client, created_at)
)
"""


class UnknownClientError(PKIError):
    """No certificate in the registry has this client name."""


@attrs.frozen
class ClientSecret:
    """One of a client's secrets: ``secret`` None is the derived one; ``retires_at`` None
    while it is the current one, else when it stops signing."""

    secret: bytes | None
    created_at: float
    retires_at: float | None


@attrs.frozen
class Rotation:
    """What a rotation did: the new secret, and until when the previous one signs."""

    client: str
    secret: bytes
    previous_until: float


def _connect(data_dir: Path) -> sqlite3.Connection:
    path = registry_path(data_dir)
    if not path.exists():
        raise UnknownClientError(f"{path}: no registry (no certificate issued yet)")
    try:
        connection = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    except sqlite3.Error as e:
        raise PKIError(f"{path}: cannot open the webhook secrets ({e})") from e
    try:
        connection.execute("PRAGMA busy_timeout = 5000")
        connection.execute(SECRETS_SCHEMA)
    except sqlite3.Error as e:
        # Closed now, not when the garbage collector gets to it: an open connection
        # can keep the registry locked for the next opener (on a full disk, in
        # exclusive mode).
        connection.close()
        raise PKIError(f"{path}: cannot open the webhook secrets ({e})") from e
    return connection


def rotate_secret(
    data_dir: Path | RegistrySource, client: str, now: float, overlap: float = DEFAULT_OVERLAP
) -> Rotation:
    """Give ``client`` a new random secret from ``now``; its current one (stored, or the
    derived one if it never rotated) signs until ``now + overlap``; older ones that are
    still in their overlap keep their end. Raises UnknownClientError or PKIError.
    ``data_dir`` is the data directory (its registry) or the shared registry."""
    secret = os.urandom(32)
    if not isinstance(data_dir, Path):
        with data_dir.open() as registry:
            when = datetime.fromtimestamp(now, UTC)
            with registry.writing("webhook_secrets", when) as connection:
                until = _rotate(connection, client, now, overlap, secret)
        return Rotation(client=client, secret=secret, previous_until=until)
    connection = _connect(data_dir)
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            until = _rotate(connection, client, now, overlap, secret)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    except sqlite3.Error as e:
        raise PKIError(f"{registry_path(data_dir)}: cannot rotate the webhook secret ({e})") from e
    finally:
        connection.close()
    return Rotation(client=client, secret=secret, previous_until=until)


def _rotate(connection: Any, client: str, now: float, overlap: float, secret: bytes) -> float:
    """The rotation's statements, in the caller's transaction; when the old secret retires."""
    known = connection.execute(
        "SELECT 1 FROM certificates WHERE name = ? LIMIT 1", (client,)
    ).fetchone()
    if known is None:
        raise UnknownClientError(f"no certificate was issued to a client named {client!r}")
    current = connection.execute(
        "SELECT created_at FROM webhook_secrets WHERE client = ? AND retires_at IS NULL",
        (client,),
    ).fetchall()
    until = now + overlap
    if current:
        connection.execute(
            "UPDATE webhook_secrets SET retires_at = ? WHERE client = ? AND retires_at IS NULL",
            (until, client),
        )
    else:  # the derived secret, never stored: it signs through the overlap
        connection.execute(
            "INSERT INTO webhook_secrets (client, created_at, secret, retires_at)"
            " VALUES (?, ?, NULL, ?)",
            (client, now - 1e-6, until),
        )
    connection.execute(
        "DELETE FROM webhook_secrets WHERE client = ? AND retires_at < ?", (client, now)
    )
    connection.execute(
        "INSERT INTO webhook_secrets (client, created_at, secret, retires_at)"
        " VALUES (?, ?, ?, NULL)",
        (client, now, secret),
    )
    return until


def read_secrets(data_dir: Path | RegistrySource) -> Mapping[str, tuple[ClientSecret, ...]]:
    """Every stored secret by client, newest first (nothing without a registry)."""
    if not isinstance(data_dir, Path):
        try:
            with data_dir.open() as registry, registry.reading() as connection:
                rows = connection.execute(_READ).fetchall()
        except RegistryError as e:
            raise PKIError(f"cannot read the webhook secrets ({e})") from e
        return _table(rows)
    if not registry_path(data_dir).exists():
        return {}
    connection = _connect(data_dir)
    try:
        rows = connection.execute(_READ).fetchall()
    except sqlite3.Error as e:
        raise PKIError(f"{registry_path(data_dir)}: cannot read the webhook secrets ({e})") from e
    finally:
        connection.close()
    return _table(rows)


_READ = (
    "SELECT client, created_at, secret, retires_at FROM webhook_secrets"
    " ORDER BY client, created_at DESC"
)


def _table(rows: list[Any]) -> Mapping[str, tuple[ClientSecret, ...]]:
    table: dict[str, list[ClientSecret]] = {}
    for client, created_at, secret, retires_at in rows:
        stored = None if secret is None else bytes(secret)
        table.setdefault(client, []).append(ClientSecret(stored, created_at, retires_at))
    return {client: tuple(secrets) for client, secrets in table.items()}
