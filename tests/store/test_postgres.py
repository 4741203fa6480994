"""What only the PostgreSQL store promises: its schema and versions, group commit, several
stores on one database, and failing (never answering success) when the connection is lost."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import attrs
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.trial.unittest import TestCase

from rail.store.model import (
    Accepted,
    JobResult,
    QueueFullError,
    RecipientUpdate,
    StoreUnavailableError,
)
from rail.store.pgschema import PG_SCHEMA_VERSION, TALLY_SHARDS
from rail.store.postgres import PostgresStore, describe_dsn
from rail.store.suppressions import Suppression
from tests.store.test_contract import make_message, open_postgres, pg_sql
from tests.support.postgres import postgres_dsn


async def _outcomes(deferreds: list[Deferred[Any]]) -> list[object]:
    """Each Deferred's result, or its exception, in order."""
    results = await DeferredList(deferreds, consumeErrors=True)
    return [value if ok else value.value for ok, value in results]


class SchemaTests(TestCase):
    def test_created_in_an_empty_database(self) -> None:
        """The first open makes the schema at the current version, with the lease columns
        and the pending index a claim reads; a second open changes nothing."""
        dsn = postgres_dsn(self)
        open_postgres(self, dsn)
        open_postgres(self, dsn)
        self.assertEqual(pg_sql(dsn, "SELECT version FROM rail_schema"), [(PG_SCHEMA_VERSION,)])
        for table in ("recipients", "webhooks", "events"):
            columns = pg_sql(
                dsn,
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_name = ? AND column_name IN ('claimed_by', 'lease_until')"
                " ORDER BY column_name",
                table,
            )
            self.assertEqual(columns, [("claimed_by", "text"), ("lease_until", "double precision")])
        plan = pg_sql(
            dsn,
            "EXPLAIN SELECT message_id FROM recipients WHERE status IN ('queued', 'deferred')"
            " AND next_attempt_at <= 1 ORDER BY next_attempt_at LIMIT 5",
        )
        self.assertIn("recipients_pending", " ".join(row[0] for row in plan))

    def test_unknown_version_refused(self) -> None:
        """A database at a version this Rail does not know (a newer Rail's) is refused at
        open with one line naming the server and database, and is not modified."""
        dsn = postgres_dsn(self)
        open_postgres(self, dsn)
        pg_sql(dsn, "UPDATE rail_schema SET version = ?", PG_SCHEMA_VERSION + 1)
        with self.assertRaises(StoreUnavailableError) as caught:
            PostgresStore.open(dsn, reactor, max_queued=10)
        text = str(caught.exception)
        self.assertIn(f"unsupported queue schema version {PG_SCHEMA_VERSION + 1}", text)
        self.assertIn(f"dbname={conninfo_to_dict(dsn)['dbname']}", text)
        self.assertNotIn("\n", text)
        self.assertEqual(pg_sql(dsn, "SELECT version FROM rail_schema"), [(PG_SCHEMA_VERSION + 1,)])

    def test_foreign_database_refused(self) -> None:
        """A database that has tables but no Rail schema version is not Rail's: refused,
        nothing created in it."""
        dsn = postgres_dsn(self)
        pg_sql(dsn, "CREATE TABLE accounts (id INTEGER)")
        with self.assertRaises(StoreUnavailableError) as caught:
            PostgresStore.open(dsn, reactor, max_queued=10)
        self.assertIn("not a Rail queue database", str(caught.exception))
        self.assertEqual(pg_sql(dsn, "SELECT to_regclass('messages')"), [(None,)])

    def test_unreachable_server_named_without_password(self) -> None:
        """A server that cannot be reached fails open with one line naming its host, port
        and database, never the password."""
        dsn = make_conninfo(
            "host=127.0.0.1 port=1 dbname=railq user=rail connect_timeout=2",
            password="s3cret-pw",
        )
        with self.assertRaises(StoreUnavailableError) as caught:
            PostgresStore.open(dsn, reactor, max_queued=10)
        text = str(caught.exception)
        self.assertTrue(text.startswith("postgresql host=127.0.0.1 port=1 dbname=railq:"), text)
        self.assertNotIn("s3cret-pw", text)
        self.assertNotIn("\n", text)
        self.assertEqual(describe_dsn("not a dsn ="), "postgresql (unparsable storage.dsn)")

    def test_concurrent_first_starts(self) -> None:
        """Nodes starting together on an empty database make the schema once (the schema
        lock): every open succeeds."""
        dsn = postgres_dsn(self)
        errors: list[BaseException] = []

        def start() -> None:
            try:
                PostgresStore.open(dsn, reactor, max_queued=10)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=start) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(errors, [])
        self.assertEqual(pg_sql(dsn, "SELECT count(*) FROM rail_schema"), [(1,)])


class DurabilityTests(TestCase):
    async def test_bytes_identical_after_reopen(self) -> None:
        """Every byte value survives the BYTEA column as accepted, across a close and a
        new store on the same database (another node, or a restart), with its sha256."""
        dsn = postgres_dsn(self)
        data = b"Subject: x\r\n\r\n" + bytes(range(256)) * 64 + b"\r\n.\r\n\n\r"
        message = make_message(data=data, recipients=("a@example.net", "b@example.net"))
        store = open_postgres(self, dsn)
        await store.accept(message)
        await store.close()
        again = open_postgres(self, dsn)
        (job,) = await again.claim(message.received_at + 1, 10, frozenset())
        self.assertEqual(job.data, data)
        self.assertEqual(
            pg_sql(dsn, "SELECT sha256, size FROM messages WHERE id = ?", message.id),
            [(hashlib.sha256(data).hexdigest(), len(data))],
        )
        self.assertEqual(again.queued, 1)


class GroupCommitTests(TestCase):
    async def test_concurrent_accepts_share_commits(self) -> None:
        """200 accepts submitted together are all stored, in fewer than 200 transactions."""
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)
        messages = [make_message() for _ in range(200)]
        results = await _outcomes([store.accept(m) for m in messages])
        self.assertEqual(results, [Accepted(m.id, 1) for m in messages])
        self.assertLess(store.commits, 200)
        self.assertEqual(store.queued, 200)
        self.assertEqual(pg_sql(dsn, "SELECT count(*) FROM messages"), [(200,)])


class OptimisticBatchTests(TestCase):
    async def test_one_failing_operation_fails_alone(self) -> None:
        """A batch is first written without a savepoint per operation (each would be a
        round trip); when one operation fails there (a NUL in a text field, which
        PostgreSQL refuses), the batch is rolled back and written again with savepoints:
        that operation fails alone, the others are stored once."""
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)
        gate, entered = threading.Event(), threading.Event()
        self.addCleanup(gate.set)

        def hold(connection: Any) -> tuple[object, int]:
            entered.set()
            return gate.wait(30), 0

        held = store._run(hold, True)  # the next accepts wait as one batch
        self.assertTrue(entered.wait(30))
        good = [make_message() for _ in range(4)]
        poison = attrs.evolve(make_message(), sender="bad\x00@example.com")
        pending = [store.accept(m) for m in good[:2]]
        pending.append(store.accept(poison))
        pending.extend(store.accept(m) for m in good[2:])
        gate.set()
        await held
        results = await _outcomes(pending)
        self.assertEqual(
            [r for i, r in enumerate(results) if i != 2], [Accepted(m.id, 1) for m in good]
        )
        self.assertIsInstance(results[2], StoreUnavailableError)
        self.assertEqual(store._writer.retried_batches, 1)
        self.assertEqual(pg_sql(dsn, "SELECT count(*) FROM messages"), [(4,)])
        # The first pass's one INSERT of the five failed as a whole; the tally agrees.
        self.assertEqual((await store.recipient_counts())["queued"], 4)


class SharedDatabaseTests(TestCase):
    async def test_two_stores_accept_concurrently(self) -> None:
        """Two stores (two writer connections, as two nodes have) accept at once into one
        database: every message is stored once, each store reads the other's, and the
        counts sum every writer's tally rows."""
        dsn = postgres_dsn(self)
        first, second = open_postgres(self, dsn), open_postgres(self, dsn)
        ones = [make_message(recipients=("a@x.example", "b@y.example")) for _ in range(50)]
        twos = [make_message(client="bob") for _ in range(50)]
        results = await _outcomes(
            [first.accept(m) for m in ones] + [second.accept(m) for m in twos]
        )
        self.assertEqual(
            results, [Accepted(m.id, 2) for m in ones] + [Accepted(m.id, 1) for m in twos]
        )
        self.assertEqual((await second.status("alice", ones[0].id)).status, "queued")
        self.assertEqual((await first.status("bob", twos[-1].id)).status, "queued")
        for store in (first, second):
            self.assertEqual((await store.recipient_counts())["queued"], 150)
        shards = pg_sql(dsn, "SELECT DISTINCT shard FROM tally")
        self.assertTrue(all(0 <= shard < TALLY_SHARDS for (shard,) in shards))

    async def test_max_queued_counts_every_node(self) -> None:
        """``max_queued`` counts the mail every node queued, read from the database at
        each batch; a message that finishes frees its place for any node."""
        dsn = postgres_dsn(self)
        first = open_postgres(self, dsn, max_queued=3)
        second = open_postgres(self, dsn, max_queued=3)
        done = make_message()
        for message in (done, make_message()):
            await first.accept(message)
        await second.accept(make_message())
        with self.assertRaises(QueueFullError):
            await first.accept(make_message())
        await second.record(
            JobResult(done.id, done.received_at + 1, (RecipientUpdate(0, "sent", "250 ok"),))
        )
        self.assertIsInstance(await first.accept(make_message()), Accepted)
        self.assertEqual(first.queued, 3)

    async def test_pending_count_follows_every_ending(self) -> None:
        """The pending count read from the tally matches the pending messages as they
        end every way: all recipients suppressed (never pending), delivered, deleted by
        an operator, quarantined."""
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)

        async def pending() -> int:
            await store.accept(make_message(client="probe"))  # a batch re-reads the count
            counted = pg_sql(
                dsn,
                "SELECT count(DISTINCT message_id) FROM recipients"
                " WHERE status IN ('queued', 'deferred')",
            )[0][0]
            self.assertEqual(store.queued, counted)
            return int(counted)

        await store.add_suppression(Suppression("alice", "gone@x.example", "manual", "api", 1.0))
        await store.accept(make_message(recipients=("gone@x.example",)))
        self.assertEqual(await pending(), 1)
        sent, deleted, bad = make_message(), make_message(), make_message()
        for message in (sent, deleted, bad):
            await store.accept(message)
        self.assertEqual(await pending(), 5)
        await store.record(
            JobResult(sent.id, sent.received_at + 1, (RecipientUpdate(0, "sent", "250 ok"),))
        )
        await store.delete(deleted.id, sent.received_at + 2, "ops", "test")
        await store.quarantine(bad.id, "corrupt", "test", sent.received_at + 3)
        self.assertEqual(await pending(), 3)

    async def test_two_nodes_purge_at_once(self) -> None:
        """Retention steps of two nodes at the same time delete every finished message
        once between them, without failing (each deletes what the other has not)."""
        dsn = postgres_dsn(self)
        first, second = open_postgres(self, dsn), open_postgres(self, dsn)
        messages = [make_message() for _ in range(60)]
        for message in messages:
            await first.accept(message)
            update = RecipientUpdate(0, "sent", "250 ok")
            await first.record(JobResult(message.id, message.received_at + 1, (update,)))
        now = messages[-1].received_at + 10
        for _ in range(10):
            steps = await _outcomes([store.purge(now, now, now, 7) for store in (first, second)])
            self.assertFalse([s for s in steps if isinstance(s, BaseException)], steps)
            if not any(step.more for step in steps):  # type: ignore[attr-defined]
                break
        self.assertEqual(pg_sql(dsn, "SELECT count(*) FROM messages"), [(0,)])
        self.assertEqual(pg_sql(dsn, "SELECT count(*) FROM finished"), [(0,)])
        self.assertEqual((await second.recipient_counts())["sent"], 0)


class ConnectionLossTests(TestCase):
    async def test_lost_mid_batch_fails_then_recovers(self) -> None:
        """The writer's connection dies in the middle of a batch (its backend is
        terminated): the acceptances of that batch fail with StoreUnavailableError and
        are not stored, and the next acceptance succeeds on a new connection."""
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)
        gate, entered = threading.Event(), threading.Event()
        self.addCleanup(gate.set)

        def hold(connection: Any) -> tuple[object, int]:
            entered.set()
            return gate.wait(30), 0

        # Holds the writer inside a first batch, so the next two ops wait as one batch.
        held = store._run(hold, True)
        self.assertTrue(entered.wait(30))
        lost = make_message()
        doomed = store.accept(lost)
        killed = store._run(
            lambda connection: (
                connection.execute("SELECT pg_terminate_backend(pg_backend_pid())"),
                0,
            ),
            True,
        )
        gate.set()
        await held
        results = await _outcomes([doomed, killed])
        self.assertIsInstance(results[0], StoreUnavailableError)
        self.assertIsInstance(results[1], StoreUnavailableError)
        self.assertEqual(pg_sql(dsn, "SELECT count(*) FROM messages WHERE id = ?", lost.id), [(0,)])
        after = make_message()
        self.assertEqual(await store.accept(after), Accepted(after.id, 1))
        self.assertEqual((await store.status("alice", after.id)).status, "queued")

    async def test_lost_during_commit_is_no_success(self) -> None:
        """The connection dies while the server runs the batch's COMMIT (a deferred
        trigger ends the backend then), so the outcome is unknown to Rail: the acceptance
        fails with StoreUnavailableError, never success, and the store goes on."""
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)
        pg_sql(
            dsn,
            "CREATE FUNCTION die() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$",
        )
        pg_sql(
            dsn,
            "CREATE CONSTRAINT TRIGGER die_at_commit AFTER INSERT ON messages"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
            " WHEN (NEW.client = 'doomed') EXECUTE FUNCTION die()",
        )
        with self.assertRaises(StoreUnavailableError):
            await store.accept(make_message(client="doomed"))
        after = make_message()
        self.assertEqual(await store.accept(after), Accepted(after.id, 1))
        self.assertEqual(pg_sql(dsn, "SELECT client FROM messages"), [("alice",)])

    async def test_lost_read_connection_fails_once(self) -> None:
        """The read thread's connection dies: the read that meets it fails with
        StoreUnavailableError, and the next read works on a new connection."""
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)
        message = make_message()
        await store.accept(message)
        self.assertIsNotNone(await store.status("alice", message.id))
        pg_sql(
            dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'rail-reader' AND datname = current_database()",
        )
        with self.assertRaises(StoreUnavailableError):
            await store.status("alice", message.id)
        self.assertEqual((await store.status("alice", message.id)).status, "queued")
