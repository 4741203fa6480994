"""Listing by tag, metadata and request id (IAdminQueue.list_messages), on the SQLite store
and MemoryStore alike, and the bounds of the SQLite queries."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from rail.store import adminmodel
from rail.store.adminmodel import QueueQuery
from rail.store.model import IdempotencyKey, MessageMeta
from rail.testing import MemoryStore
from tests.store.test_contract import make_message, open_postgres, open_sqlite

_T0 = 1_800_000_000.0


class _SearchContract:
    def make_store(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = self.make_store()

    async def _accept(self, client: str = "alice", key: str | None = None, **meta: Any) -> str:
        message = attrs.evolve(make_message(client=client), meta=MessageMeta(**meta))
        idempotency = None if key is None else IdempotencyKey(key, "fp")
        await self.store.accept(message, idempotency)
        return message.id

    async def _ids(self, **query: Any) -> list[str]:
        page = await self.store.list_messages(QueueQuery(**query))
        return [m.id for m in page.messages]

    async def test_tag_metadata_request_id(self) -> None:
        """Each filter finds exactly the messages that carry it, newest first, and a
        client's query only that client's; summaries carry the meta."""
        a = await self._accept(tag="t", metadata={"k": "1"})
        b = await self._accept(tag="t", metadata={"k": "2"}, request_id="r")
        c = await self._accept(client="bob", tag="t", request_id="r")
        self.assertEqual(await self._ids(tag="t"), [c, b, a])
        self.assertEqual(await self._ids(tag="t", client="alice"), [b, a])
        self.assertEqual(await self._ids(metadata=(("k", "1"),)), [a])
        self.assertEqual(await self._ids(request_id="r", client="alice"), [b])
        self.assertEqual(await self._ids(request_id="r", client="bob"), [c])
        self.assertEqual(await self._ids(tag="t", metadata=(("k", "2"),), client="alice"), [b])
        self.assertEqual(await self._ids(tag="none"), [])
        self.assertEqual(await self._ids(tag="t", request_id="r"), [c, b])
        self.assertEqual(await self._ids(tag="t", request_id="r", client="alice"), [b])
        page = await self.store.list_messages(QueueQuery(tag="t", client="alice", limit=1))
        self.assertEqual(page.messages[0].meta, MessageMeta("r", "t", {"k": "2"}))
        rest = await self.store.list_messages(
            QueueQuery(tag="t", client="alice", cursor=page.next_cursor)
        )
        self.assertEqual([m.id for m in rest.messages], [a])

    async def test_request_id_without_meta(self) -> None:
        """A message accepted under a request id but without meta (sent before schema 8)
        is still found through the idempotency table."""
        message_id = await self._accept(key="old")
        self.assertEqual(await self._ids(request_id="old", client="alice"), [message_id])


class SQLiteSearchTests(_SearchContract, TestCase):
    def make_store(self) -> Any:
        return open_sqlite(self)

    async def test_tag_window_is_bounded(self) -> None:
        """A tag query examines at most SCAN_BUDGET tagged messages from its cursor: past
        that, a short page with a cursor to go on from."""
        self.patch(adminmodel, "SCAN_BUDGET", 3)
        from rail.store import admin

        self.patch(admin, "SCAN_BUDGET", 3)
        wanted = await self._accept(client="alice", tag="t")
        others = [await self._accept(client="bob", tag="t") for _ in range(3)]
        page = await self.store.list_messages(QueueQuery(tag="t", client="alice"))
        self.assertEqual(page.messages, ())
        self.assertEqual(page.next_cursor, others[0])
        rest = await self.store.list_messages(
            QueueQuery(tag="t", client="alice", cursor=page.next_cursor)
        )
        self.assertEqual([m.id for m in rest.messages], [wanted])
        self.assertIsNone(rest.next_cursor)

    async def test_tag_plan_uses_the_tag_index(self) -> None:
        """The tag query reads through the message_meta tag index, not a table scan."""
        connection = self.store._writer._connection  # read-only use, the writer is idle
        plan = connection.execute(
            "EXPLAIN QUERY PLAN SELECT message_id FROM message_meta WHERE tag = ?"
            " AND message_id < ? ORDER BY message_id DESC LIMIT 10",
            ("t", "Z"),
        ).fetchall()
        details = " ".join(str(row[-1]) for row in plan)
        self.assertIn("message_meta_tag", details)
        self.assertNotIn("TEMP B-TREE", details)


class PostgresSearchTests(_SearchContract, TestCase):
    def make_store(self) -> Any:
        return open_postgres(self)


class MemorySearchTests(_SearchContract, TestCase):
    def make_store(self) -> Any:
        return MemoryStore(Clock())
