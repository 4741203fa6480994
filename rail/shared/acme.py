"""ACME with several nodes: one orders at a time, all serve the result and the challenges.

- **One order at a time.** A node due to renew takes ``pg_try_advisory_lock`` on a
  connection of its own for the whole order; a node that cannot get it raises
  :class:`~rail.acme.client.OrderBusy` (the service checks again later, by which time the
  other node's certificate is in the database and is used instead of a new order).
- **One certificate for all.** The account key and ``server.pem`` are mirrored files
  (:mod:`rail.shared.mirror`, ``acme/``): copied from the database before an order (so a
  certificate another node got meanwhile is used, not ordered again, and every node uses
  one ACME account) and stored after it, with a notification on the ``acme`` topic; the
  other nodes copy it and hot-swap it into their listeners.
- **Challenges on any node.** The CA may fetch ``/.well-known/acme-challenge/TOKEN`` from
  any node the name resolves to. The ordering node commits each token with its key
  authorization before telling the CA to validate (:class:`SharedChallenges`); a node
  that does not hold a token in memory looks it up in the database (:func:`lookup`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rail.acme.challenges import PendingChallenges, is_token
from rail.acme.client import OrderBusy
from rail.acme.decide import renewal_reason
from rail.acme.storage import load_acme_material
from rail.pki.files import PKIError
from rail.pki.tls import ServerMaterial
from rail.shared.mirror import pull, push
from rail.shared.registry import SharedSource
from rail.store.db import DATABASE_ERRORS

__all__ = ["SharedChallenges", "lookup", "ordered_once", "shared_material"]

_ORDER_LOCK = 126939302182916
_PREFIX = "acme-challenge:"
_STALE = 24 * 3600.0
"""Challenge rows older than this (an order that crashed) are deleted at the next add."""


class SharedChallenges(PendingChallenges):
    """This node's pending challenges, each also committed to the shared database (from
    the order's thread) so that every node answers it."""

    def __init__(self, source: SharedSource, clock: Callable[[], float]) -> None:
        super().__init__()
        self._source = source
        self._clock = clock

    def add(self, token: str, key_authorization: str) -> None:
        super().add(token, key_authorization)
        now = self._clock()
        self._write(
            [
                (
                    "DELETE FROM blobs WHERE name LIKE ? AND updated_at < ?",
                    (_PREFIX + "%", now - _STALE),
                ),
                (
                    "INSERT INTO blobs (name, data, updated_at) VALUES (?, ?, ?) ON CONFLICT"
                    " (name) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
                    (_PREFIX + token, key_authorization.encode("ascii"), now),
                ),
            ]
        )

    def remove(self, token: str) -> None:
        super().remove(token)
        self._write([("DELETE FROM blobs WHERE name = ?", (_PREFIX + token,))])

    def _write(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        connection = self._source.connections.take()
        try:
            connection.execute("BEGIN")
            try:
                for sql, params in statements:
                    connection.execute(sql, params)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        finally:
            self._source.connections.give(connection)


def lookup(source: SharedSource, token: str) -> str | None:
    """The key authorization of ``token`` if any node's order is waiting on it (blocking:
    call it in a thread). None for anything that is not a token, and when the database
    cannot be read (the CA then fails this validation, and the order is retried)."""
    if not is_token(token):
        return None
    try:
        connection = source.connections.take()
    except DATABASE_ERRORS:
        return None
    try:
        row = connection.execute(
            "SELECT data FROM blobs WHERE name = ?", (_PREFIX + token,)
        ).fetchone()
    except DATABASE_ERRORS:
        return None
    finally:
        source.connections.give(connection)
    return None if row is None else bytes(row[0]).decode("ascii")


def ordered_once(
    source: SharedSource,
    data_dir: Path,
    names: Sequence[str],
    renew_before: float,
    order: Callable[[], ServerMaterial],
    now: Callable[[], float],
) -> ServerMaterial:
    """Run ``order()`` (which saves ``acme/server.pem``) unless another node holds the
    order lock (:class:`OrderBusy`) or has already stored a certificate that needs no
    renewal (returned instead); a new certificate is stored and the nodes notified."""
    connection = source.connections.take()
    try:
        held = connection.execute("SELECT pg_try_advisory_lock(?)", (_ORDER_LOCK,)).fetchone()
        if not held or not held[0]:
            raise OrderBusy("another node is ordering the certificate; it is used once stored")
        try:
            pull(source, data_dir, ("acme/",))
            current = _saved(data_dir, now())
            if (
                current is not None
                and renewal_reason(current.chain[0], names, now(), renew_before) is None
            ):
                return current
            material = order()
            push(source, data_dir, ("acme/",), now=now(), topic="acme")
            return material
        finally:
            connection.execute("SELECT pg_advisory_unlock(?)", (_ORDER_LOCK,))
    finally:
        source.connections.give(connection)


def shared_material(source: SharedSource, data_dir: Path, now: float) -> ServerMaterial | None:
    """The certificate another node stored (copied here first), or None if there is none
    usable; for the nodes told of a new one (blocking: call it in a thread)."""
    pull(source, data_dir, ("acme/",))
    return _saved(data_dir, now)


def _saved(data_dir: Path, now: float) -> ServerMaterial | None:
    try:
        return load_acme_material(data_dir, datetime.fromtimestamp(now, UTC))
    except PKIError:
        return None
