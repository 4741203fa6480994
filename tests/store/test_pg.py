"""The PostgreSQL connection runs the store's qmark SQL (:mod:`rail.store.pg`)."""

from __future__ import annotations

import sqlite3

from psycopg.conninfo import conninfo_to_dict, make_conninfo
from twisted.trial.unittest import SynchronousTestCase, TestCase

from rail.store.db import DATABASE_ERRORS, POSTGRESQL, SQLITE, dialect_of
from rail.store.pg import connect, translate
from tests.support.postgres import postgres_dsn


class TranslateTests(SynchronousTestCase):
    def test_parameters_and_percent(self) -> None:
        """``?`` becomes ``%s`` and ``%`` is doubled, outside quotes and comments only."""
        self.assertEqual(
            translate("SELECT a FROM t WHERE b = ? AND c LIKE '%?''%' AND d % 2 = ?"),
            "SELECT a FROM t WHERE b = %s AND c LIKE '%%?''%%' AND d %% 2 = %s",
        )
        self.assertEqual(translate('SELECT "a?" -- why?\n, ?'), 'SELECT "a?" -- why?\n, %s')


class PGConnectionTests(TestCase):
    def test_round_trip(self) -> None:
        """Statements, parameters (booleans as integers, bytes as bytea), executemany,
        transactions and errors behave as the SQLite connection's do."""
        connection = connect(postgres_dsn(self))
        self.addCleanup(connection.close)
        self.assertIs(dialect_of(connection), POSTGRESQL)
        connection.execute("CREATE TABLE t (a INTEGER, b TEXT, c BYTEA)")
        self.assertFalse(connection.in_transaction)
        connection.execute(POSTGRESQL.begin)
        connection.execute("INSERT INTO t VALUES (?, ?, ?)", (True, "x%y?'", b"\x00\x01"))
        connection.executemany("INSERT INTO t VALUES (?, ?, ?)", [(2, "a", b""), (3, "b", None)])
        self.assertTrue(connection.in_transaction)
        connection.execute("COMMIT")
        rows = connection.execute(
            "SELECT a, b, c FROM t WHERE b LIKE '%y%' OR a > ? ORDER BY a", (1,)
        )
        self.assertEqual(
            rows.fetchall(), [(1, "x%y?'", b"\x00\x01"), (2, "a", b""), (3, "b", None)]
        )
        self.assertEqual(connection.execute("UPDATE t SET a = a + 1 WHERE a > ?", (1,)).rowcount, 2)
        with self.assertRaises(DATABASE_ERRORS):
            connection.execute("SELECT nothing FROM t")

    def test_bounded_waits_unless_the_dsn_says(self) -> None:
        """A connection has a connect timeout, TCP keepalives and a TCP user timeout, so a
        server that stops answering cannot hold the writer forever; the DSN's own values
        win."""
        dsn = make_conninfo(postgres_dsn(self), keepalives_idle="60")
        connection = connect(dsn)
        self.addCleanup(connection.close)
        settings = conninfo_to_dict(connection.raw.info.dsn)
        self.assertEqual(
            (settings["keepalives_idle"], settings["tcp_user_timeout"], settings["keepalives"]),
            ("60", "30000", "1"),
        )
        self.assertEqual(settings["connect_timeout"], "10")

    def test_sqlite_dialect(self) -> None:
        """A plain sqlite3 connection has the SQLite dialect."""
        self.assertIs(dialect_of(sqlite3.connect(":memory:")), SQLITE)
