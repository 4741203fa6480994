"""How the PostgreSQL writer saves round trips, and that what it stores does not change:
a batch is written in pipeline mode, its messages in one statement, its inserts tallied
once per statement (schema 16)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredList
from twisted.trial.unittest import TestCase

from rail.events.model import EVENT_TYPES
from rail.events.subscriptions import Subscription, Subscriptions
from rail.inbound.model import WebhookResult
from rail.store.adminmodel import RetryTarget
from rail.store.deliveries import quarantine_message, record_result
from rail.store.inbound import quarantine_inbound, record_webhook
from rail.store.model import Accepted, JobResult, MessageMeta, NewMessage, RecipientUpdate
from rail.store.pg import PGConnection, connect
from rail.store.pgschema import PG_SCHEMA_VERSION, pending_messages
from rail.store.postgres import PostgresStore
from rail.store.suppressions import Suppression
from tests.store.test_contract import make_message, open_postgres, pg_sql
from tests.store.test_inbound import make_inbound
from tests.support.postgres import postgres_dsn

# Every column the acceptance writes, in an order that does not depend on the batch.
_STATE = (
    "SELECT id, client, sender, channel, smtputf8, eight_bit, received_at, size, sha256,"
    " data FROM messages ORDER BY id",
    "SELECT message_id, idx, address, status, attempts, next_attempt_at, last_reply,"
    " updated_at FROM recipients ORDER BY message_id, idx",
    "SELECT message_id, request_id, tag, metadata FROM message_meta ORDER BY message_id",
    "SELECT message_id, idx, address, reason FROM suppressed_recipients ORDER BY message_id, idx",
)


def _messages(suppressed: bool) -> list[NewMessage]:
    """Messages with one to three recipients, some with meta; the last one with a
    suppressed recipient too if ``suppressed``."""
    found = []
    for n in range(9):
        recipients = tuple(f"r{n}-{i}@example.net" for i in range(1 + n % 3))
        if n == 8 and suppressed:  # what it stores beside its message comes after the others
            recipients += ("Gone@Example.net",)
        message = make_message(recipients=recipients)
        if n % 2:
            message = attrs.evolve(
                message, meta=MessageMeta(request_id=f"req-{n}", tag="t", metadata={"k": "v"})
            )
        found.append(message)
    return found


async def _outcomes(deferreds: list[Deferred[Any]]) -> list[object]:
    results = await DeferredList(deferreds, consumeErrors=True)
    return [value if ok else value.value for ok, value in results]


async def _as_one_batch(
    store: PostgresStore, submit: Callable[[], list[Deferred[Any]]]
) -> tuple[list[object], Callable[[str], int]]:
    """What ``submit`` submits, written as one batch (the writer is kept busy meanwhile):
    each answer or error, and how many of the batch's statements have a given part."""
    held, gate = _hold_writer(store)
    statements = _count_statements(store)
    pending = submit()
    gate.set()
    await held
    return await _outcomes(pending), statements


def _hold_writer(store: PostgresStore) -> tuple[Deferred[Any], threading.Event]:
    """Keep ``store``'s writer busy until the returned event is set, so that what is
    submitted meanwhile is written as one batch; the Deferred of the holding operation."""
    gate, entered = threading.Event(), threading.Event()

    def hold(connection: Any) -> tuple[object, int]:
        entered.set()
        return gate.wait(30), 0

    held = store._run(hold, True)
    assert entered.wait(30)
    return held, gate


def _until_one_waits_for_a_lock(dsn: str, done: threading.Event | None = None) -> None:
    """Return once a session of ``dsn``'s server waits for a lock, or ``done`` is set (or
    after ten seconds, for the caller's assertions to tell what happened)."""
    for _ in range(1000):
        if done is not None and done.is_set():
            return
        if pg_sql(dsn, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'") == [
            (1,)
        ]:
            return
        threading.Event().wait(0.01)


def _overlapping(
    testcase: TestCase, dsn: str, first: Callable[[Any], object], second: Callable[[Any], object]
) -> None:
    """Two nodes' transactions that overlap: ``first(connection)`` runs in one left open,
    then ``second(connection)`` in another, in a thread, until it has finished or waits
    for a lock the first holds; then the first commits, and the second is waited for."""
    one, two = connect(dsn), connect(dsn)
    testcase.addCleanup(one.close)
    testcase.addCleanup(two.close)
    one.execute("BEGIN")
    first(one)
    done = threading.Event()

    def other_node() -> None:
        two.execute("BEGIN")
        second(two)
        two.execute("COMMIT")
        done.set()

    thread = threading.Thread(target=other_node)
    thread.start()
    testcase.addCleanup(thread.join, 30)
    _until_one_waits_for_a_lock(dsn, done)
    one.execute("COMMIT")
    thread.join(30)
    testcase.assertTrue(done.is_set())


def _count_statements(store: PostgresStore) -> Callable[[str], int]:
    """How many statements the writer's connection runs from now whose text has a part."""
    connection = store._writer._connection
    assert isinstance(connection, PGConnection)
    texts: list[str] = []
    original = connection.raw.execute

    def execute(query: Any, *args: Any, **kwargs: Any) -> Any:
        texts.append(str(query))
        return original(query, *args, **kwargs)

    connection.raw.execute = execute  # type: ignore[method-assign]
    return lambda part: sum(part in text for text in texts)


class PipelinedBatchTests(TestCase):
    async def _store_all(
        self, together: bool, suppressed: bool
    ) -> tuple[list[Any], list[list[Any]], int, int]:
        """Accept :func:`_messages` together or one by one: the answers, what is stored,
        how many statements inserted messages, and how many batches were written again
        after asking."""
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)
        await store.add_suppression(Suppression("alice", "gone@example.net", "manual", "api", 1))
        messages = _messages(suppressed)
        if together:
            results, statements = await _as_one_batch(
                store, lambda: [store.accept(message) for message in messages]
            )
            inserts = statements("INSERT INTO messages")
        else:
            results = [await store.accept(message) for message in messages]
            inserts = len(messages)
        state = [pg_sql(dsn, query) for query in _STATE]
        counts = await store.recipient_counts()
        state.append([(store.queued, counts["queued"])])
        return results, state, inserts, store._writer.asked_again

    async def _compare(self, suppressed: bool) -> tuple[int, int]:
        together, rows, inserts, asked = await self._store_all(True, suppressed)
        apart, expected, _, _ = await self._store_all(False, suppressed)
        self.assertTrue(all(isinstance(result, Accepted) for result in together))

        def shape(state: list[list[Any]], results: list[Any]) -> list[list[Any]]:
            ids = {result.id: f"m{n}" for n, result in enumerate(results)}
            return [
                [tuple(ids.get(value, value) for value in row) for row in table] for table in state
            ]

        def answers(results: list[Any]) -> list[tuple[int, int]]:
            return [(result.recipients, len(result.suppressed)) for result in results]

        self.assertEqual(answers(together), answers(apart))
        self.assertEqual(answers(together)[8], (4, 1) if suppressed else (3, 0))
        messages, recipients, meta, stopped, counts = shape(rows, together)
        other = shape(expected, apart)
        self.assertEqual([row[:6] for row in messages], [row[:6] for row in other[0]])
        for row in messages:  # each its own body, with its own size and digest
            self.assertEqual(row[7:9], (len(row[9]), hashlib.sha256(row[9]).hexdigest()))
        # received_at, and the times derived from it, differ between the two runs.
        self.assertEqual(
            [row[:5] + row[6:7] for row in recipients], [row[:5] + row[6:7] for row in other[1]]
        )
        self.assertTrue(all(row[5] == row[7] for row in recipients))  # due at once
        self.assertEqual(meta, other[2])
        self.assertEqual(stopped, other[3])
        self.assertEqual(len(stopped), int(suppressed))
        self.assertEqual(counts, other[4])
        self.assertEqual(counts, [(9, 18)])
        return inserts, asked

    async def test_one_batch_stores_what_one_at_a_time_stores(self) -> None:
        """Nine messages accepted as one batch answer and store exactly what they do
        accepted one by one: the same rows, meta and counts (message ids differ, so they
        are compared by position). The batch asks nothing first: one INSERT for all the
        messages and their recipients, written once."""
        self.assertEqual(await self._compare(suppressed=False), (1, 0))

    async def test_a_suppressed_recipient_makes_the_batch_ask(self) -> None:
        """When a recipient of the batch is suppressed (its address listed in another
        case), the check at the end of the first pass fails it; the batch is written again
        after looking its recipients up, and stores what one-by-one acceptance does."""
        self.assertEqual(await self._compare(suppressed=True), (2, 1))


# Schema 15's tally of inserts: a trigger per row.
_V15_TRIGGERS = """
DROP TRIGGER messages_tally_insert ON messages;
DROP TRIGGER messages_tally ON messages;
CREATE TRIGGER messages_tally AFTER INSERT OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION rail_tally_messages();
""" + "".join(
    f"""
DROP TRIGGER {table}_tally_insert ON {table};
DROP TRIGGER {table}_tally ON {table};
CREATE TRIGGER {table}_tally AFTER INSERT OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION rail_tally('{queue}');
"""
    for table, queue in (("recipients", "outbound"), ("webhooks", "inbound"), ("events", "events"))
)


class TallyMigrationTests(TestCase):
    async def test_version_15_tallies_inserts_per_statement(self) -> None:
        """A database at version 15 (a trigger per inserted row) is migrated to
        statement triggers; the counts of mail stored before and after it add up."""
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)
        await store.close()
        pg_sql(dsn, _V15_TRIGGERS)
        pg_sql(dsn, "UPDATE rail_schema SET version = 15")
        old = open_postgres(self, dsn)
        await old.accept(make_message(recipients=("a@example.net", "b@example.net")))
        await old.close()
        pg_sql(dsn, "UPDATE rail_schema SET version = 15")  # it was migrated on open
        pg_sql(dsn, _V15_TRIGGERS)
        await (open_postgres(self, dsn)).close()
        self.assertEqual(pg_sql(dsn, "SELECT version FROM rail_schema"), [(PG_SCHEMA_VERSION,)])
        triggers = pg_sql(
            dsn,
            "SELECT tgname, tgtype & 1 FROM pg_trigger WHERE NOT tgisinternal"
            " AND tgname LIKE '%tally%' ORDER BY tgname",
        )
        self.assertIn(("messages_tally_insert", 0), triggers)  # bit 0 clear: per statement
        self.assertIn(("recipients_tally_insert", 0), triggers)
        self.assertIn(("messages_tally", 1), triggers)  # deletes: per row
        store = open_postgres(self, dsn)
        await _outcomes([store.accept(make_message()) for _ in range(3)])
        self.assertEqual(store.queued, 4)
        self.assertEqual((await store.recipient_counts())["queued"], 5)


# Version 16's triggers: changes of status and ``finished`` rows tallied once per row.
_V16_TRIGGERS = """
DROP TRIGGER finished_tally_insert ON finished;
DROP TRIGGER finished_tally ON finished;
CREATE TRIGGER finished_tally AFTER INSERT OR DELETE ON finished
    FOR EACH ROW EXECUTE FUNCTION rail_tally_rows('finished');
""" + "".join(
    f"""
DROP TRIGGER {table}_tally_update ON {table};
CREATE TRIGGER {table}_tally_update AFTER UPDATE OF status ON {table}
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION rail_tally('{queue}');
"""
    for table, queue in (("recipients", "outbound"), ("webhooks", "inbound"), ("events", "events"))
)
_COUNTED = (
    "SELECT status, count(*) FROM recipients GROUP BY status ORDER BY status",
    "SELECT status, sum(n) FROM tally WHERE queue = 'outbound' AND n <> 0"
    " GROUP BY status HAVING sum(n) <> 0 ORDER BY status",
)


class ChangeTallyTests(TestCase):
    async def test_version_16_tallies_changes_per_statement(self) -> None:
        """A database at version 16 (a trigger per changed row) is migrated to statement
        triggers on UPDATE and on ``finished`` inserts; what was tallied before and after
        agrees with the rows, through results, a claim and an operator's retry (updates
        that change no status)."""
        dsn = postgres_dsn(self)
        await (open_postgres(self, dsn)).close()
        pg_sql(dsn, _V16_TRIGGERS)
        pg_sql(dsn, "UPDATE rail_schema SET version = 16")
        at = 1_800_000_000.0
        old = open_postgres(self, dsn)
        pg_sql(dsn, "UPDATE rail_schema SET version = 16")  # it was migrated on open
        pg_sql(dsn, _V16_TRIGGERS)
        first = make_message(recipients=("a@example.net", "b@example.net"), received_at=at)
        await old.accept(first)
        await old.record(JobResult(first.id, at + 1, (RecipientUpdate(0, "sent", "250"),)))
        await old.close()
        store = open_postgres(self, dsn)
        self.assertEqual(pg_sql(dsn, "SELECT version FROM rail_schema"), [(PG_SCHEMA_VERSION,)])
        triggers = pg_sql(
            dsn,
            "SELECT tgname, tgtype & 1 FROM pg_trigger WHERE NOT tgisinternal"
            " AND tgname LIKE '%tally%' ORDER BY tgname",
        )
        self.assertIn(("recipients_tally_update", 0), triggers)  # bit 0 clear: per statement
        self.assertIn(("finished_tally_insert", 0), triggers)
        self.assertIn(("finished_tally", 1), triggers)  # deletes: per row
        more = [make_message(received_at=at + 2 + n) for n in range(3)]
        for message in more:
            await store.accept(message)
        self.assertTrue(await store.claim(at + 10, 10, frozenset()))
        results = [
            JobResult(first.id, at + 20, (RecipientUpdate(1, "sent", "250"),)),
            JobResult(more[0].id, at + 20, (RecipientUpdate(0, "sent", "250"),)),
            JobResult(more[1].id, at + 20, (RecipientUpdate(0, "deferred", "451", None, at + 99),)),
        ]
        answers, statements = await _as_one_batch(
            store, lambda: [store.record(result) for result in results]
        )
        self.assertEqual(answers, [None] * 3)
        self.assertEqual(statements("WITH ORDINALITY"), 1)  # the three updates, at once
        self.assertEqual(await store.retry(RetryTarget(), at + 30, "ops"), 1)
        counted, tallied = (pg_sql(dsn, query) for query in _COUNTED)
        self.assertEqual(counted, [("deferred", 1), ("queued", 1), ("sent", 3)])
        self.assertEqual(tallied, counted)
        self.assertEqual(
            pg_sql(dsn, "SELECT id FROM finished ORDER BY id"), [(first.id,), (more[0].id,)]
        )
        reader = connect(dsn)
        self.addCleanup(reader.close)
        self.assertEqual(pending_messages(reader), 2)  # stored less finished, from the tally


# Every column recording writes, by position of message (ids differ between runs).
_RECORDED = (
    "SELECT message_id, idx, status, attempts, last_reply, remote_mta, next_attempt_at,"
    " updated_at, claimed_by, lease_until FROM recipients ORDER BY message_id, idx",
    "SELECT message_id, idx, at, status, reply, remote_mta FROM attempts"
    " ORDER BY message_id, idx, seq",
    "SELECT id, finished_at FROM finished ORDER BY id",
    "SELECT client, type, message_id FROM events ORDER BY id",
)


class PlainResultsTests(TestCase):
    """Delivery results recorded as one batch (rail.store.recordbatch: two questions to
    the server for all of them) store what they store recorded one by one."""

    async def _record_all(self, together: bool) -> tuple[list[list[Any]], int, int]:
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)
        store.subscriptions = Subscriptions({"watched": Subscription(frozenset(EVENT_TYPES))})
        at = 1_800_000_000.0
        two = make_message(recipients=("a@example.net", "b@example.net"), received_at=at)
        held = make_message(received_at=at + 1)
        watched = make_message(client="watched", received_at=at + 2)
        sent = [make_message(received_at=at + 3 + n) for n in range(4)]
        late = make_message(recipients=("c@example.net", "d@example.net"), received_at=at + 7)
        for message in (two, held, watched, *sent, late):
            await store.accept(message)
        pg_sql(dsn, "INSERT INTO holds VALUES (?, ?, 'ops')", held.id, at + 5)
        when = at + 10
        await store.record(JobResult(late.id, when - 1, (RecipientUpdate(1, "sent", "250 d"),)))
        results = [
            JobResult(two.id, when, (RecipientUpdate(0, "sent", "250 a", "mx.example"),)),
            JobResult(held.id, when, (RecipientUpdate(0, "deferred", "451 x", None, when + 60),)),
            JobResult(watched.id, when, (RecipientUpdate(0, "sent", "250 w"),)),
            *(JobResult(m.id, when, (RecipientUpdate(0, "sent", "250 ok"),)) for m in sent[:2]),
            JobResult(two.id, when + 1, (RecipientUpdate(1, "sent", "250 b"),)),
            JobResult(sent[2].id, when, (RecipientUpdate(0, "deferred", "421 y", None, when + 9),)),
            # A result for a recipient already final changes nothing.
            JobResult(sent[0].id, when + 2, (RecipientUpdate(0, "deferred", "4 z", None, 1.0),)),
            # The message finishes with the result that ended it, not a later one for a
            # recipient already final (which is also the first result for it here).
            JobResult(late.id, when, (RecipientUpdate(0, "sent", "250 c"),)),
            JobResult(late.id, when + 3, (RecipientUpdate(1, "deferred", "4 y", None, 1.0),)),
        ]
        if together:
            answers, statements = await _as_one_batch(
                store, lambda: [store.record(result) for result in results]
            )
            self.assertEqual(statements("JOIN messages m ON m.id = r.message_id"), 1)
        else:
            answers = [await store.record(result) for result in results]
        self.assertEqual(answers, [None] * len(results))
        ids = {m.id: f"m{n}" for n, m in enumerate((two, held, watched, *sent, late))}
        state = [
            [tuple(ids.get(value, value) for value in row) for row in pg_sql(dsn, query)]
            for query in _RECORDED
        ]
        return state, store.queued, (await store.recipient_counts())["sent"]

    async def test_one_batch_records_what_one_at_a_time_records(self) -> None:
        """Sent and deferred results (one for a held message, which keeps no next
        attempt), both recipients of one message in the batch (it finishes once), a
        client that wants events (recorded alone, with its event), and a result for a
        recipient already final (nothing changes)."""
        together = await self._record_all(True)
        apart = await self._record_all(False)
        self.assertEqual(together, apart)
        state, queued, sent = together
        self.assertEqual((queued, sent), (3, 7))  # held and one deferred, one not tried
        self.assertEqual([row[0] for row in state[2]], ["m0", "m2", "m3", "m4", "m7"])
        self.assertEqual(state[2][-1][1], 1_800_000_010.0)  # m7's own result, not the late one
        self.assertEqual(
            state[3],
            [("watched", "message.accepted", "m2"), ("watched", "message.delivered", "m2")],
        )
        self.assertEqual([row[4] for row in state[1]].count("4 z"), 0)


class ClaimReadTests(TestCase):
    async def test_a_claim_reads_its_messages_in_one_statement(self) -> None:
        """A claim of many jobs reads their messages (checked against their size and
        digest) in one statement, not one each; a message whose data does not match is
        still quarantined alone."""
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)
        messages = [make_message(received_at=1_800_000_000.0 + n) for n in range(6)]
        for message in messages:
            await store.accept(message)
        pg_sql(dsn, "UPDATE messages SET sha256 = 'x' WHERE id = ?", messages[2].id)
        statements = _count_statements(store)
        jobs = await store.claim(1_800_000_100.0, 10, frozenset())
        self.assertEqual(statements("WHERE id = ANY("), 1)
        self.assertEqual(
            sorted(job.message_id for job in jobs),
            sorted(m.id for m in messages if m != messages[2]),
        )
        self.assertEqual({job.data for job in jobs}, {m.data for m in messages if m != messages[2]})
        (status,) = pg_sql(
            dsn, "SELECT status FROM recipients WHERE message_id = ?", messages[2].id
        )
        self.assertEqual(status, ("failed",))


class FinishRaceTests(TestCase):
    async def test_two_nodes_record_the_last_recipients_at_once(self) -> None:
        """Two nodes record the results of a message's last two pending recipients in
        transactions that overlap: the message is finished once, by whichever commits
        last (each would otherwise see the other's recipient still pending, and neither
        finish it: counted pending for ever, never purged)."""
        await self._race(quarantine_first=False)

    async def test_a_quarantine_and_a_result_at_once(self) -> None:
        """One node quarantines a message (a damaged row) while another records the result
        of the recipient it holds: the message is finished once all the same."""
        await self._race(quarantine_first=True)

    async def _race(self, quarantine_first: bool) -> None:
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)
        message = make_message(recipients=("a@example.net", "b@example.net"))
        await store.accept(message)
        await store.close()
        when = message.received_at + 1

        def result(idx: int) -> JobResult:
            return JobResult(message.id, when, (RecipientUpdate(idx, "sent", "250 ok"),))

        def first(connection: Any) -> None:
            if quarantine_first:  # node n1 quarantines what it may: recipient 0 (1 is n2's)
                pg_sql(
                    dsn,
                    "UPDATE recipients SET claimed_by = 'n2', lease_until = ? WHERE idx = 1",
                    when + 60,
                )
                self.assertTrue(quarantine_message(connection, message.id, "damaged", when, "n1"))
            else:
                record_result(connection, result(0), None)

        _overlapping(
            self,
            dsn,
            first,
            lambda connection: record_result(
                connection, result(1), None, node="n2" if quarantine_first else None
            ),
        )
        self.assertEqual(
            pg_sql(dsn, "SELECT count(*) FROM finished WHERE id = ?", message.id), [(1,)]
        )
        reader = connect(dsn)
        self.addCleanup(reader.close)
        self.assertEqual(pending_messages(reader), 0)


class InboundFinishRaceTests(TestCase):
    async def test_two_nodes_record_the_last_webhooks_at_once(self) -> None:
        """Two nodes record the POSTs of an inbound message's last two webhook jobs (two
        apps) in transactions that overlap: the message is finished once, so retention
        purges it (each would otherwise see the other's job still pending)."""
        await self._race(quarantine_first=False)

    async def test_a_quarantine_and_a_webhook_result_at_once(self) -> None:
        """One node quarantines an inbound message while another records the POST of the
        job it holds: the message is finished once all the same."""
        await self._race(quarantine_first=True)

    async def _race(self, quarantine_first: bool) -> None:
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)
        message = make_inbound()
        await store.accept_inbound(message)
        await store.close()
        when = message.received_at + 1

        def result(client: str) -> WebhookResult:
            return WebhookResult(message.id, client, when, "delivered", "HTTP 200")

        def first(connection: Any) -> None:
            if quarantine_first:  # node n1 quarantines what it may: app1's job (app2's: n2)
                pg_sql(
                    dsn,
                    "UPDATE webhooks SET claimed_by = 'n2', lease_until = ? WHERE client = 'app2'",
                    when + 60,
                )
                self.assertTrue(quarantine_inbound(connection, message.id, "damaged", when, "n1"))
            else:
                record_webhook(connection, result("app1"), None)

        _overlapping(
            self,
            dsn,
            first,
            lambda connection: record_webhook(
                connection, result("app2"), None, node="n2" if quarantine_first else None
            ),
        )
        self.assertEqual(
            pg_sql(dsn, "SELECT queue FROM finished WHERE id = ?", message.id), [("inbound",)]
        )


class LockOrderTests(TestCase):
    async def test_a_batch_locks_its_messages_in_id_order_first(self) -> None:
        """A batch whose results lock two messages takes both locks first, in id order,
        not each as its result comes (a bounce, recorded alone, then a plain result):
        while another node holds the first message, the batch holds nothing, so that
        node may go on to lock the second (it would otherwise wait for the batch while the
        batch waits for it: a deadlock, which fails one of them)."""
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)
        at = 1_800_000_000.0
        first = make_message(received_at=at)
        second = make_message(received_at=at + 1)
        for message in (first, second):
            await store.accept(message)
        other = connect(dsn)
        self.addCleanup(other.close)
        other.execute("BEGIN")
        other.execute("SELECT id FROM messages WHERE id = ? FOR NO KEY UPDATE", (first.id,))
        held, gate = _hold_writer(store)
        pending = [
            store.record(JobResult(m.id, at + 10, (RecipientUpdate(0, status, reply),)))
            for m, status, reply in ((second, "bounced", "550 no"), (first, "sent", "250 ok"))
        ]
        gate.set()
        _until_one_waits_for_a_lock(dsn)  # the batch, for the first message
        other.execute("SELECT id FROM messages WHERE id = ? FOR NO KEY UPDATE NOWAIT", (second.id,))
        other.execute("COMMIT")
        await held
        self.assertEqual(await _outcomes(pending), [None, None])
        self.assertEqual(
            pg_sql(dsn, "SELECT count(*) FROM finished WHERE id IN (?, ?)", first.id, second.id),
            [(2,)],
        )

    async def test_a_batch_locks_its_inbound_messages_in_id_order_first(self) -> None:
        """The same for webhook results, which lock their inbound messages: a batch
        recording the second message's POST, then the first's, holds nothing while
        another node holds the first."""
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)
        first = make_inbound(received_at=1_800_000_000.0)
        second = make_inbound(received_at=1_800_000_001.0)
        for message in (first, second):
            await store.accept_inbound(message)
        other = connect(dsn)
        self.addCleanup(other.close)
        other.execute("BEGIN")
        other.execute("SELECT id FROM inbound WHERE id = ? FOR NO KEY UPDATE", (first.id,))
        held, gate = _hold_writer(store)
        pending = [
            store.record_webhook(WebhookResult(m.id, "app1", m.received_at + 5, "delivered", "200"))
            for m in (second, first)
        ]
        gate.set()
        _until_one_waits_for_a_lock(dsn)  # the batch, for the first message
        other.execute("SELECT id FROM inbound WHERE id = ? FOR NO KEY UPDATE NOWAIT", (second.id,))
        other.execute("COMMIT")
        await held
        self.assertEqual(await _outcomes(pending), [None, None])

    async def test_an_inbound_retry_locks_its_message_first(self) -> None:
        """An operator's retry of an inbound message locks the message's row with the
        batch's others, in their order, before it changes the webhook jobs: it waits for
        a node that holds that row (recording a POST) rather than take the jobs first."""
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)
        message = make_inbound()
        await store.accept_inbound(message)
        pg_sql(dsn, "UPDATE webhooks SET next_attempt_at = ?", message.received_at + 3600)
        other = connect(dsn)
        self.addCleanup(other.close)
        other.execute("BEGIN")
        other.execute("SELECT id FROM inbound WHERE id = ? FOR NO KEY UPDATE", (message.id,))
        retried = store.retry_inbound(message.id, message.received_at + 10)
        _until_one_waits_for_a_lock(dsn)
        waiting = pg_sql(
            dsn, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        )
        other.execute("COMMIT")
        self.assertEqual(waiting, [(1,)])
        self.assertEqual(await retried, 2)

    async def test_a_retry_of_everything_skips_rows_being_recorded(self) -> None:
        """An operator's retry of a domain or of everything does not wait for recipients
        another node is recording a result for (their rows locked): it would hold the
        rows it changed while waiting, and that node's batch could be waiting for those
        (a deadlock). The others are due at once; the locked one is left to its result."""
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)
        at = 1_800_000_000.0
        busy, free = make_message(received_at=at), make_message(received_at=at + 1)
        for message in (busy, free):
            await store.accept(message)
        pg_sql(dsn, "UPDATE recipients SET next_attempt_at = ?", at + 3600)
        other = connect(dsn)
        self.addCleanup(other.close)
        other.execute("BEGIN")
        other.execute("SELECT 1 FROM recipients WHERE message_id = ? FOR NO KEY UPDATE", (busy.id,))
        self.assertEqual(await store.retry(RetryTarget(), at + 10, "ops"), 1)
        self.assertEqual(await store.retry(RetryTarget(domain="example.net"), at + 10, "ops"), 0)
        other.execute("COMMIT")
        self.assertEqual(
            pg_sql(dsn, "SELECT message_id, next_attempt_at FROM recipients ORDER BY message_id"),
            [(busy.id, at + 3600), (free.id, at + 10)],
        )

    test_a_retry_of_everything_skips_rows_being_recorded.timeout = 30  # type: ignore[attr-defined]

    async def test_an_operator_bounce_tells_only_what_it_ended(self) -> None:
        """Another node records recipient 0 as sent while an operator bounces the message:
        the bounce waits for it, then ends recipient 1 alone and tells of that one alone
        (it read both as pending before, and told of a recipient already delivered)."""
        dsn = postgres_dsn(self)
        store = open_postgres(self, dsn)
        store.subscriptions = Subscriptions({"alice": Subscription(frozenset(EVENT_TYPES))})
        message = make_message(recipients=("a@example.net", "b@example.net"))
        await store.accept(message)
        when = message.received_at + 1
        other = connect(dsn)
        self.addCleanup(other.close)
        other.execute("BEGIN")
        record_result(
            other, JobResult(message.id, when, (RecipientUpdate(0, "sent", "250"),)), None
        )
        bounced = store.bounce(message.id, when + 1, "ops", None, None)
        _until_one_waits_for_a_lock(dsn)  # the bounce, for the other node's transaction
        other.execute("COMMIT")
        self.assertEqual(await bounced, "done")
        self.assertEqual(
            pg_sql(dsn, "SELECT type, recipient FROM events WHERE type <> 'message.accepted'"),
            [("message.bounced", "b@example.net")],
        )
        self.assertEqual(
            pg_sql(dsn, "SELECT idx, status FROM recipients ORDER BY idx"),
            [(0, "sent"), (1, "bounced")],
        )
