"""The oldest pending mail of the shared queue, for DKIM's old selectors
(:mod:`rail.shared.pending`)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from twisted.trial.unittest import SynchronousTestCase

from rail.config import parse_config
from rail.shared.pending import oldest_pending
from tests.support.postgres import postgres_dsn


class OldestPendingTests(SynchronousTestCase):
    def test_shared_queue(self) -> None:
        """With postgresql the queue's tables in the database are asked (none yet:
        nothing pending); the oldest message with a queued or deferred recipient wins."""
        dsn = postgres_dsn(self)  # type: ignore[arg-type]
        config = parse_config(
            {
                "hostname": "rail.test",
                "tls": {"self_signed": True},
                "storage": {"backend": "postgresql", "dsn": dsn},
            },
            Path(self.mktemp()).absolute(),
        )
        self.assertIsNone(oldest_pending(config))
        with psycopg.connect(dsn, autocommit=True) as db:
            # The columns the query reads (the queue's own schema has more).
            db.execute("CREATE TABLE messages (id TEXT PRIMARY KEY, received_at REAL)")
            db.execute("CREATE TABLE recipients (message_id TEXT, status TEXT)")
            db.execute("INSERT INTO messages VALUES ('01A', 100.0), ('01B', 200.0)")
            db.execute("INSERT INTO recipients VALUES ('01A', 'sent'), ('01B', 'deferred')")
        self.assertEqual(oldest_pending(config), 200.0)
