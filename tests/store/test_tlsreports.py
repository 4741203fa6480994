"""Tests for :mod:`rail.store.tlsreports`: TLS-RPT counters in the queue database."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from rail.store import tlsreports
from rail.store.schema import SCHEMA_VERSION, database_path, open_writable
from rail.store.sqlite import SQLiteStore
from tests.store.oldschemas import schema_v11
from tests.store.test_contract import open_postgres

_STS = ("version: STSv1", "mode: enforce", "mx: mx.dest.test", "max_age: 86400")


def _connection() -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.executescript(tlsreports.TLS_REPORTS_SCHEMA)
    return connection


class CounterTests(SynchronousTestCase):
    def test_counts_add_up_per_row(self) -> None:
        """The same key adds to one row; the latest non-null reason is kept; another
        key is another row."""
        connection = _connection()
        key = ("2026-12-03", "dest.test", "sts", _STS, "certificate-expired", "mx", "192.0.2.1")
        tlsreports.add_counts(connection, [(*key, 2, "expired")])
        tlsreports.add_counts(connection, [(*key, 3, None), (*key, 1, "expired again")])
        success = ("2026-12-03", "dest.test", "sts", _STS, "success", "", "", 7, None)
        tlsreports.add_counts(connection, [success])
        rows = tlsreports.read_day(connection, "2026-12-03")
        self.assertEqual(sorted(rows), sorted([(*key, 6, "expired again"), success]))
        count = connection.execute("SELECT count(*) FROM tls_outcomes").fetchone()[0]
        self.assertEqual(count, 2)

    def test_days_deletion_and_dropping(self) -> None:
        """Unreported days before a day come oldest first; deleting a domain's rows of a
        day leaves the others; dropping removes everything older."""
        connection = _connection()
        for day in ("2026-12-01", "2026-12-02", "2026-12-04"):
            for domain in ("a.test", "b.test"):
                tlsreports.add_counts(
                    connection, [(day, domain, "no-policy-found", (), "success", "", "", 1, None)]
                )
        self.assertEqual(
            tlsreports.unreported_days(connection, "2026-12-04"), ["2026-12-01", "2026-12-02"]
        )
        self.assertEqual(tlsreports.delete_rows(connection, "2026-12-02", ["a.test"]), 1)
        self.assertEqual(
            [row[1] for row in tlsreports.read_day(connection, "2026-12-02")], ["b.test"]
        )
        self.assertEqual(tlsreports.drop_before(connection, "2026-12-02"), 2)
        self.assertEqual(
            tlsreports.unreported_days(connection, "2026-12-31"), ["2026-12-02", "2026-12-04"]
        )


class MigrationTests(SynchronousTestCase):
    def test_version_10_database_gains_the_table(self) -> None:
        """A version 11 queue is migrated: the counters table exists, nothing else changes."""
        directory = Path(self.mktemp())
        directory.mkdir()
        old = sqlite3.connect(database_path(directory), isolation_level=None)
        old.executescript(schema_v11())
        old.execute("PRAGMA user_version=11")
        old.close()
        connection = open_writable(directory)
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            self.assertEqual(version, SCHEMA_VERSION)
            connection.execute("SELECT count(*) FROM tls_outcomes").fetchone()
        finally:
            connection.close()


class StoreTests(TestCase):
    timeout = 20

    async def test_counters_through_the_store_threads(self) -> None:
        """The store adds counters on its writer thread and reads them on its read
        thread; a reported domain's rows go."""
        directory = Path(self.mktemp())
        directory.mkdir()
        store = SQLiteStore.open(directory, reactor, max_queued=10, min_free_bytes=0)
        self.addCleanup(store.close)
        store.start()
        await self._counters(store)

    async def test_counters_on_postgresql(self) -> None:
        """The same on the PostgreSQL store."""
        await self._counters(open_postgres(self))

    async def _counters(self, store: Any) -> None:
        row = ("2026-12-03", "dest.test", "tlsa", ("3 1 1 ab",), "validation-failure")
        await store.add_tls_counts([(*row, "mx.dest.test", "127.0.0.1", 2, "DANE: no match")])
        self.assertEqual(await store.tls_unreported_days("2026-12-04"), ["2026-12-03"])
        self.assertEqual(
            await store.tls_day("2026-12-03"),
            [(*row, "mx.dest.test", "127.0.0.1", 2, "DANE: no match")],
        )
        self.assertEqual(await store.tls_reported("2026-12-03", ["dest.test"]), 1)
        self.assertEqual(await store.tls_day("2026-12-03"), [])
