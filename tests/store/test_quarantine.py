"""Quarantine and stored-bytes verification, run against the SQLite store and MemoryStore
alike: a message that cannot be handled is ``failed`` for good, reported once, never
claimed again and never in the way of the others; SQLite-only tests damage the file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, TestCase

from rail.inbound.model import WebhookResult, WebhookTarget
from rail.store.ids import new_message_id
from rail.store.model import (
    BounceReport,
    JobResult,
    NewMessage,
    Quarantined,
    RecipientUpdate,
)
from rail.store.schema import database_path
from rail.store.sqlite import SQLiteStore
from rail.testing import MemoryStore
from tests.store.test_contract import make_message, open_postgres, open_sqlite, pg_sql
from tests.store.test_inbound import make_inbound
from tests.support.postgres import postgres_dsn

_NOW = 1_800_000_000.0


def _no_dsn(report: BounceReport) -> NewMessage:
    raise AssertionError(f"no DSN may be made for {report.message_id}")


class _QuarantineContract:
    """Behaviour every store shows; mixed into a TestCase providing ``make_store`` and
    ``corrupt``."""

    store: Any

    def make_store(self) -> Any:
        raise NotImplementedError

    def corrupt(self, message_id: str, how: str, table: str = "messages") -> None:
        """Damage the stored data of ``message_id``: ``truncated``, ``text`` (wrong type)
        or ``hash`` (same length, different bytes)."""
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = self.make_store()
        self.reported: list[Quarantined] = []
        self.store.observe_quarantined(self.reported.append)

    async def test_quarantine_fails_pending_recipients(self) -> None:
        """quarantine() makes every pending recipient ``failed`` with the reason (no
        attempt counted), the message ``failed`` with that reason, reports it once, and
        the message is never claimed again; a second quarantine changes nothing."""
        message = make_message(recipients=("a@one.example", "b@two.example"), received_at=_NOW)
        await self.store.accept(message)
        self.assertTrue(await self.store.quarantine(message.id, "error", "boom", _NOW + 5))
        status = await self.store.status(message.client, message.id)
        self.assertEqual((status.status, status.reason), ("failed", "quarantined: boom"))
        self.assertEqual(
            [
                (r.status, r.attempts, r.last_reply, r.next_attempt_at, r.updated_at)
                for r in status.recipients
            ],
            [("failed", 0, "quarantined: boom", None, _NOW + 5)] * 2,
        )
        self.assertEqual(self.reported, [Quarantined("outbound", message.id, "error", "boom")])
        self.assertEqual(await self.store.claim(_NOW + 1e6, 10, frozenset()), [])
        self.assertFalse(await self.store.quarantine(message.id, "error", "again", _NOW + 6))
        self.assertEqual(len(self.reported), 1)
        counts = await self.store.recipient_counts()
        self.assertEqual((counts["failed"], counts["queued"]), (2, 0))

    async def test_quarantine_keeps_final_recipients_and_makes_no_dsn(self) -> None:
        """Recipients already sent or bounced keep their status; the quarantine makes no
        DSN (the message's bytes are what cannot be handled; the bounced recipient had
        its own DSN when it bounced); a late result for a quarantined recipient is
        ignored."""
        message = make_message(
            recipients=("a@one.example", "b@two.example", "c@three.example"), received_at=_NOW
        )
        await self.store.accept(message)
        reported: list[BounceReport] = []

        def dsn(report: BounceReport) -> None:
            reported.append(report)
            return None

        await self.store.record(
            JobResult(
                message.id,
                _NOW + 1,
                (RecipientUpdate(0, "sent", "250 ok"), RecipientUpdate(1, "bounced", "550 no")),
            ),
            dsn,
        )
        self.assertEqual([[b.address for b in r.bounced] for r in reported], [["b@two.example"]])
        await self.store.quarantine(message.id, "timeout", "prepare took over 30s", _NOW + 2)
        late = await self.store.record(
            JobResult(message.id, _NOW + 3, (RecipientUpdate(2, "sent", "250 ok"),)), _no_dsn
        )
        self.assertIsNone(late)
        status = await self.store.status(message.client, message.id)
        self.assertEqual(status.status, "failed")
        self.assertEqual([r.status for r in status.recipients], ["sent", "bounced", "failed"])

    async def _claim_with_one_bad(self, how: str, reason: str | None = None) -> None:
        good = [make_message(received_at=_NOW + i) for i in range(3)]
        bad = make_message(received_at=_NOW - 1, recipients=("x@one.example", "y@two.example"))
        for message in (bad, *good):
            await self.store.accept(message)
        self.corrupt(bad.id, how)
        reason = reason or f"stored data is truncated (10 of {len(bad.data)} bytes)"
        jobs = await self.store.claim(_NOW + 10, 3, frozenset())
        self.assertEqual([j.message_id for j in jobs], [m.id for m in good])
        self.assertEqual([j.data for j in jobs], [m.data for m in good])
        self.assertEqual(self.reported, [Quarantined("outbound", bad.id, "corrupt", reason)])
        status = await self.store.status(bad.client, bad.id)
        self.assertEqual((status.status, status.reason), ("failed", "quarantined: " + reason))
        self.assertEqual(await self.store.claim(_NOW + 10, 10, frozenset(j.key for j in jobs)), [])
        self.assertEqual(len(self.reported), 1)

    async def test_claim_skips_truncated_data(self) -> None:
        """A message whose stored data is shorter than accepted is quarantined by the claim
        that reads it, and the claim still fills its limit with the good ones."""
        await self._claim_with_one_bad("truncated")

    async def test_claim_skips_data_of_the_wrong_type(self) -> None:
        """Stored data that is text instead of bytes is quarantined, the others flow."""
        await self._claim_with_one_bad("text", "stored data has the wrong type (text)")

    async def test_claim_skips_data_not_matching_its_hash(self) -> None:
        """Stored data of the right size whose bytes do not match the sha256 recorded at
        acceptance is quarantined, the others flow."""
        await self._claim_with_one_bad("hash", "stored data does not match its sha256")

    async def test_webhook_claim_skips_corrupt_inbound(self) -> None:
        """A webhook claim quarantines every job of an inbound message whose data fails
        verification (``failed``, ``last_reply`` saying why, no DSN), reports it once and
        hands out the jobs of the other messages."""
        targets = (WebhookTarget("app1", "https://app1.example/hook", ("a@rail.test",)),)
        bad = make_inbound(received_at=_NOW - 1)
        good = attrs.evolve(make_inbound(targets=targets), id=new_message_id(_NOW))
        await self.store.accept_inbound(bad)
        await self.store.accept_inbound(good)
        self.corrupt(bad.id, "truncated", table="inbound")
        jobs = await self.store.claim_webhooks(_NOW + 1, 10, frozenset())
        self.assertEqual([j.key for j in jobs], [(good.id, "app1")])
        reason = f"stored data is truncated (10 of {len(bad.data)} bytes)"
        self.assertEqual(self.reported, [Quarantined("inbound", bad.id, "corrupt", reason)])
        for client in ("app1", "app2"):
            status = await self.store.inbound_status(client, bad.id)
            self.assertEqual(
                (status.status, status.last_reply, status.attempts, status.next_attempt_at),
                ("failed", "quarantined: " + reason, 0, None),
            )
        self.assertEqual(
            await self.store.claim_webhooks(_NOW + 1e6, 10, frozenset({(good.id, "app1")})), []
        )
        counts = await self.store.webhook_counts()
        self.assertEqual(counts["failed"], 2)

    async def test_quarantine_inbound(self) -> None:
        """quarantine_inbound() fails the pending jobs of one inbound message, reports it
        once and leaves delivered jobs alone."""
        message = make_inbound()
        await self.store.accept_inbound(message)
        await self.store.record_webhook(
            WebhookResult(message.id, "app1", _NOW + 1, "delivered", "HTTP 200")
        )
        self.assertTrue(await self.store.quarantine_inbound(message.id, "error", "bad", _NOW + 2))
        self.assertFalse(await self.store.quarantine_inbound(message.id, "error", "bad", _NOW + 3))
        self.assertEqual((await self.store.inbound_status("app1", message.id)).status, "delivered")
        self.assertEqual((await self.store.inbound_status("app2", message.id)).status, "failed")
        self.assertEqual(self.reported, [Quarantined("inbound", message.id, "error", "bad")])


class SQLiteQuarantineTests(_QuarantineContract, TestCase):
    def make_store(self) -> Any:
        self.directory = Path(self.mktemp()) / "queue"
        return open_sqlite(self, self.directory)

    def sql(self, statement: str, *args: object) -> None:
        """Run ``statement`` on the queue file beside the store (as an operator or a
        damaged disk would), in its own transaction."""
        connection = sqlite3.connect(database_path(self.directory))
        try:
            connection.execute(statement, args)
            connection.commit()
        finally:
            connection.close()

    def corrupt(self, message_id: str, how: str, table: str = "messages") -> None:
        change = {
            "truncated": "substr(data, 1, 10)",
            "text": "CAST(data AS TEXT)",
            "hash": "CAST(x'58' || substr(data, 2) AS BLOB)",
        }[how]
        self.sql(f"UPDATE {table} SET data = {change} WHERE id = ?", message_id)  # noqa: S608

    async def test_quarantine_survives_restart(self) -> None:
        """A message quarantined by a claim is still ``failed`` after the store is
        reopened, and is not claimed again."""
        bad, good = make_message(received_at=_NOW), make_message(received_at=_NOW + 1)
        await self.store.accept(bad)
        await self.store.accept(good)
        self.corrupt(bad.id, "hash")
        (job,) = await self.store.claim(_NOW + 10, 10, frozenset())
        self.assertEqual(job.message_id, good.id)
        await self.store.close()
        reopened = open_sqlite(self, self.directory)
        (job,) = await reopened.claim(_NOW + 10, 10, frozenset())
        self.assertEqual(job.message_id, good.id)
        status = await reopened.status(bad.client, bad.id)
        self.assertEqual(status.status, "failed")
        self.assertEqual(reopened.queued, 1)

    async def test_claim_skips_null_data(self) -> None:
        """A NULL where the data should be (possible only when the file itself is
        damaged: the schema forbids it) is quarantined, the others flow."""
        bad, good = make_message(received_at=_NOW), make_message(received_at=_NOW + 1)
        await self.store.accept(bad)
        await self.store.accept(good)
        await self.store.close()
        connection = sqlite3.connect(database_path(self.directory))
        connection.execute("PRAGMA writable_schema = ON")
        connection.execute(
            "UPDATE sqlite_schema SET sql = replace(sql, 'data BLOB NOT NULL', 'data BLOB')"
            " WHERE name = 'messages'"
        )
        connection.commit()
        connection.close()
        self.sql("UPDATE messages SET data = NULL WHERE id = ?", bad.id)
        store = open_sqlite(self, self.directory)
        store.observe_quarantined(self.reported.append)
        (job,) = await store.claim(_NOW + 10, 10, frozenset())
        self.assertEqual(job.message_id, good.id)
        reason = "stored data is missing (NULL)"
        self.assertEqual(self.reported, [Quarantined("outbound", bad.id, "corrupt", reason)])

    async def test_claim_skips_unreadable_recipient(self) -> None:
        """A recipient address that is not UTF-8 (which would fail the whole query if read
        as text) quarantines its message; the other messages flow."""
        bad, good = make_message(received_at=_NOW), make_message(received_at=_NOW + 1)
        await self.store.accept(bad)
        await self.store.accept(good)
        self.sql(
            "UPDATE recipients SET address = CAST(x'ff40' AS TEXT) WHERE message_id = ?", bad.id
        )
        (job,) = await self.store.claim(_NOW + 10, 10, frozenset())
        self.assertEqual(job.message_id, good.id)
        self.assertEqual(
            self.reported,
            [Quarantined("outbound", bad.id, "corrupt", "stored recipient address is not UTF-8")],
        )

    async def test_hash_column_damaged(self) -> None:
        """A damaged ``sha256`` column (the data intact) is a mismatch too: Rail cannot
        tell which of the two is wrong, so it sends neither."""
        bad, good = make_message(received_at=_NOW), make_message(received_at=_NOW + 1)
        await self.store.accept(bad)
        await self.store.accept(good)
        self.sql("UPDATE messages SET sha256 = ? WHERE id = ?", "0" * 64, bad.id)
        (job,) = await self.store.claim(_NOW + 10, 10, frozenset())
        self.assertEqual(job.message_id, good.id)
        self.assertEqual([q.message_id for q in self.reported], [bad.id])

    async def test_claim_skips_a_row_on_a_corrupt_page(self) -> None:
        """A message whose data runs over a page SQLite reports corrupt (a broken overflow
        chain: "database disk image is malformed") is quarantined; the messages around
        it, on sound pages, flow. Before, that error failed every claim."""
        before = make_message(received_at=_NOW)
        bad = make_message(
            received_at=_NOW + 1, data=b"".join(b"MARK%06d" % i for i in range(12_500))
        )
        after = make_message(received_at=_NOW + 2)
        for message in (before, bad, after):
            await self.store.accept(message)
        await self.store.close()
        path = database_path(self.directory)
        # The store's writer and read connections close on their own threads, and the WAL
        # is not always checkpointed at close (seen in 5 runs of 20): move it into the
        # file before looking for the message's pages there.
        checkpoint = sqlite3.connect(path)
        checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpoint.close()
        raw = bytearray(path.read_bytes())
        page = raw.index(b"MARK006000") // 4096 * 4096  # an overflow page of ``bad``
        raw[page : page + 4] = b"\xff\xff\xff\xff"  # its next-page pointer
        path.write_bytes(bytes(raw))
        store = open_sqlite(self, self.directory)
        store.observe_quarantined(self.reported.append)
        jobs = await store.claim(_NOW + 10, 10, frozenset())
        self.assertEqual([j.message_id for j in jobs], [before.id, after.id])
        reason = "stored row is damaged (database disk image is malformed)"
        self.assertEqual(self.reported, [Quarantined("outbound", bad.id, "corrupt", reason)])
        self.assertEqual((await store.status(bad.client, bad.id)).status, "failed")

    def test_store_type(self) -> None:
        """(These tests run against the real SQLite store.)"""
        self.assertIsInstance(self.store, SQLiteStore)


class PostgresQuarantineTests(_QuarantineContract, TestCase):
    def make_store(self) -> Any:
        self.dsn = postgres_dsn(self)
        return open_postgres(self, self.dsn)

    def corrupt(self, message_id: str, how: str, table: str = "messages") -> None:
        if how == "text":
            raise SkipTest("a BYTEA column holds nothing but bytes")
        change = {
            "truncated": "substr(data, 1, 10)",
            "hash": "'\\x58'::bytea || substr(data, 2)",
        }[how]
        pg_sql(self.dsn, f"UPDATE {table} SET data = {change} WHERE id = ?", message_id)  # noqa: S608


class MemoryQuarantineTests(_QuarantineContract, TestCase):
    def make_store(self) -> Any:
        return MemoryStore(Clock())

    def corrupt(self, message_id: str, how: str, table: str = "messages") -> None:
        stored = self.store.messages if table == "messages" else self.store.inbound
        data = stored[message_id].data
        damaged = {"truncated": data[:10], "text": data.decode(), "hash": b"X" + data[1:]}[how]
        stored[message_id] = attrs.evolve(stored[message_id], data=damaged)
