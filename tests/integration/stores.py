"""The store backends the process-level tests run Rail on, and what they read back.

The crash, delivery-crash and failover tests start ``twistd rail`` as real processes and
then look at what the store holds. With SQLite that is ``data_dir/queue/queue.sqlite3``;
with PostgreSQL a fresh database of the test cluster (:mod:`tests.support.postgres`).
The reads here are plain SQL on the tables both backends share (``messages``,
``recipients``), through a :class:`rail.store.db.Connection` of either engine, so the
tests check the rows themselves rather than trust the code under test to report them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import yaml
from twisted.trial.unittest import SkipTest, TestCase

from rail.store.db import Connection
from rail.store.schema import database_path, open_readonly

__all__ = [
    "BACKENDS",
    "Backend",
    "StoredMessage",
    "attempt_counts",
    "backend_for",
    "pending_count",
    "status_counts",
    "stored_messages",
]

BACKENDS = ("sqlite", "postgresql")


@attrs.frozen
class Backend:
    """Where a test's Rail keeps its queue: ``sqlite`` under its ``data_dir``, or the
    PostgreSQL database ``dsn``."""

    name: str
    dsn: str | None = None

    def configure(self, config_path: Path) -> None:
        """Point the ``rail.yaml`` at ``config_path`` at this backend."""
        document = yaml.safe_load(config_path.read_text())
        storage = document.setdefault("storage", {})
        if self.name == "postgresql":
            storage.update(backend="postgresql", dsn=self.dsn)
        else:
            storage.pop("dsn", None)
            storage["backend"] = "sqlite"
        config_path.write_text(yaml.safe_dump(document))

    @contextmanager
    def connect(self, data_dir: Path) -> Iterator[Connection]:
        """A connection to the queue of the Rail whose ``data_dir`` is given (read-only
        for SQLite; PostgreSQL is the shared database whatever the data_dir)."""
        connection: Connection
        if self.name == "postgresql":
            from rail.store.pg import connect

            assert self.dsn is not None
            connection = connect(self.dsn, application_name="rail-tests")
        else:
            connection = open_readonly(data_dir / "queue")
        try:
            yield connection
        finally:
            connection.close()

    def require_used(self, data_dir: Path) -> None:
        """Skip the test when the Rail just started did not use this backend because the
        code has no such backend yet: configured for PostgreSQL, it created no tables in
        the database and opened an SQLite queue under its data_dir instead. Anything else
        (no tables and no SQLite file either) is left for the test's assertions to fail."""
        if self.name != "postgresql":
            return
        with self.connect(data_dir) as connection:
            row = connection.execute("SELECT to_regclass('messages') IS NOT NULL").fetchone()
        if not row[0] and database_path(data_dir / "queue").exists():
            raise SkipTest(
                "storage.backend: postgresql is not implemented on this branch: twistd was"
                " configured for PostgreSQL but created no tables there and opened"
                f" {database_path(data_dir / 'queue')} instead"
            )


def backend_for(testcase: TestCase, name: str) -> Backend:
    """The backend ``name`` for ``testcase``; PostgreSQL gets a fresh database, dropped
    after the test (skips when PostgreSQL is not installed)."""
    if name == "postgresql":
        from tests.support.postgres import postgres_dsn

        return Backend(name, postgres_dsn(testcase))
    return Backend(name)


@attrs.frozen
class StoredMessage:
    """A message row with its recipients' addresses, in ``idx`` order."""

    id: str
    client: str
    sender: str
    recipients: tuple[str, ...]
    sha256: str
    data: bytes


_MESSAGES = "SELECT id, client, sender, sha256, data FROM messages ORDER BY id"
_RECIPIENTS = "SELECT message_id, address FROM recipients ORDER BY message_id, idx"


def stored_messages(connection: Connection) -> list[StoredMessage]:
    """Every message in the queue, oldest first, with its recipients."""
    addresses: dict[str, list[str]] = {}
    for message_id, address in connection.execute(_RECIPIENTS).fetchall():
        addresses.setdefault(message_id, []).append(address)
    return [
        StoredMessage(
            id=message_id,
            client=client,
            sender=sender,
            recipients=tuple(addresses.get(message_id, ())),
            sha256=sha256,
            data=bytes(data),
        )
        for message_id, client, sender, sha256, data in connection.execute(_MESSAGES).fetchall()
    ]


def status_counts(connection: Connection) -> dict[str, int]:
    """Recipients by status, every status present (zero when none)."""
    counts = dict.fromkeys(("queued", "deferred", "sent", "bounced", "failed", "deleted"), 0)
    for status, count in connection.execute(
        "SELECT status, count(*) FROM recipients GROUP BY status"
    ).fetchall():
        counts[status] = int(count)
    return counts


def pending_count(connection: Connection) -> int:
    """Recipients still to deliver (``queued`` or ``deferred``)."""
    row = connection.execute(
        "SELECT count(*) FROM recipients WHERE status IN ('queued', 'deferred')"
    ).fetchone()
    return int(row[0])


def attempt_counts(connection: Connection) -> dict[int, int]:
    """How many recipients took how many delivery attempts."""
    return {
        int(attempts): int(count)
        for attempts, count in connection.execute(
            "SELECT attempts, count(*) FROM recipients GROUP BY attempts"
        ).fetchall()
    }
