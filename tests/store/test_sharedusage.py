"""Every node's acceptances per client in the shared database: what the writer adds in the
accepting transaction, what each node reads of the others, the start-up seed, retention,
and the schema step that makes the table."""

from __future__ import annotations

import time

import attrs
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from rail.store.model import Accepted, IdempotencyKey, Replayed
from rail.store.pgschema import PG_SCHEMA_VERSION
from rail.store.postgres import PostgresStore
from rail.store.sharedusage import USAGE_RETENTION
from tests.store.test_contract import make_message, pg_sql
from tests.support.postgres import postgres_dsn

NOW = 1_789_999_200.0  # a multiple of 60 s


def _open(test: TestCase, dsn: str, node: str) -> PostgresStore:
    """A store on ``dsn`` as node ``node``, closed when ``test`` ends."""
    store = PostgresStore.open(dsn, reactor, max_queued=10_000, node=node)
    test.addCleanup(store.close)
    store.start()
    return store


class SharedUsageTests(TestCase):
    def setUp(self) -> None:
        self.dsn = postgres_dsn(self)
        self.a = _open(self, self.dsn, "host-a/1/A")
        self.b = _open(self, self.dsn, "host-b/2/B")

    async def test_each_node_reads_the_others(self) -> None:
        """Messages node A accepts are in B's read of the others' usage, per client and
        5-second bucket, and not in A's own read (A counts them in memory)."""
        await self.a.accept(make_message(client="app", received_at=NOW + 1))
        await self.a.accept(
            make_message(
                client="app", received_at=NOW + 3, recipients=("x@a.example", "y@a.example")
            )
        )
        await self.a.accept(make_message(client="app", received_at=NOW + 6))
        await self.b.accept(make_message(client="other", received_at=NOW + 2))
        seen_by_b = await self.b.others_usage(NOW)
        self.assertEqual(
            sorted(seen_by_b),
            [("app", NOW, "host-a/1/A", 2, 3), ("app", NOW + 5, "host-a/1/A", 1, 1)],
        )
        seen_by_a = await self.a.others_usage(NOW)
        self.assertEqual(seen_by_a, [("other", NOW, "host-b/2/B", 1, 1)])
        self.assertEqual(await self.b.others_usage(NOW + 5), [("app", NOW + 5, "host-a/1/A", 1, 1)])

    async def test_one_upsert_per_client_and_bucket_in_a_batch(self) -> None:
        """A batch of messages adds its totals to one row per client and bucket, and a
        later batch adds to the same row."""
        items = [(make_message(client="app", received_at=NOW + i), None) for i in range(4)]
        results = await self.a.accept_many(items)
        self.assertTrue(all(isinstance(result, Accepted) for result in results))
        await self.a.accept(make_message(client="app", received_at=NOW + 4))
        self.assertEqual(
            pg_sql(self.dsn, "SELECT client, bucket, node, messages FROM client_usage"),
            [("app", NOW, "host-a/1/A", 5)],
        )

    async def test_replays_and_dsns_do_not_count(self) -> None:
        """A replayed request and a message with a null sender (a DSN) add nothing."""
        key = IdempotencyKey("r1", "f1")
        first = make_message(client="app", received_at=NOW)
        self.assertIsInstance(await self.a.accept(first, key), Accepted)
        again = make_message(client="app", received_at=NOW + 1)
        self.assertIsInstance(await self.a.accept(again, key), Replayed)
        await self.a.accept(attrs.evolve(make_message(client="app", received_at=NOW), sender=""))
        self.assertEqual(await self.b.others_usage(NOW), [("app", NOW, "host-a/1/A", 1, 1)])

    async def test_seed_reads_minutes_then_rows(self) -> None:
        """The start-up read gives the older usage summed per client and minute (all
        other nodes together) and the recent usage row by row."""
        for node, at, n in [("n1", NOW - 3600, 2), ("n2", NOW - 3590, 3), ("n1", NOW - 5, 4)]:
            pg_sql(
                self.dsn,
                "INSERT INTO client_usage VALUES (?, ?, ?, ?, ?)",
                "app",
                at,
                node,
                n,
                n,
            )
        old, recent = await self.b.usage_seed(NOW - 86400, NOW - 60)
        self.assertEqual(old, [("app", NOW - 3600, 5, 5)])
        self.assertEqual(recent, [("app", NOW - 5, "n1", 4, 4)])

    async def test_retention_deletes_day_old_rows_in_steps(self) -> None:
        """A purge step deletes up to its limit of rows older than a day (and says there
        is more); newer rows stay."""
        for at in (NOW - USAGE_RETENTION - 10, NOW - USAGE_RETENTION - 5, NOW - 100):
            pg_sql(self.dsn, "INSERT INTO client_usage VALUES ('app', ?, 'n1', 1, 1)", at)
        first = await self.a.purge(NOW, NOW - 1e9, NOW - 1e9, 1)
        self.assertTrue(first.more)
        await self.a.purge(NOW, NOW - 1e9, NOW - 1e9, 1)
        self.assertEqual(pg_sql(self.dsn, "SELECT bucket FROM client_usage"), [(NOW - 100,)])


class MigrationTests(TestCase):
    async def test_version_14_gets_the_table_and_the_last_day(self) -> None:
        """A database at version 14 is migrated to the current version with the
        ``client_usage`` table, filled with the last day's client mail already stored."""
        dsn = postgres_dsn(self)
        store = _open(self, dsn, "old/1/X")
        now = time.time()
        await store.accept(make_message(client="app", received_at=now - 10))
        await store.accept(make_message(client="app", received_at=now - 2 * 86400))
        await store.close()
        pg_sql(dsn, "DROP TABLE client_usage")
        pg_sql(dsn, "UPDATE rail_schema SET version = 14")
        _open(self, dsn, "new/2/Y")
        self.assertEqual(pg_sql(dsn, "SELECT version FROM rail_schema"), [(PG_SCHEMA_VERSION,)])
        self.assertEqual(
            pg_sql(dsn, "SELECT client, node, messages, recipients FROM client_usage"),
            [("app", "schema-15", 1, 1)],
        )
