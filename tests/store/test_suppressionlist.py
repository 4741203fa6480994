"""The ISuppressionList contract (list, search, look up, add, remove), run against the
SQLite store and MemoryStore alike."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from rail.store.suppressionmodel import (
    SUPPRESSION_SCAN,
    ISuppressionList,
    SuppressionCursor,
    SuppressionQuery,
    decode_cursor,
    encode_cursor,
)
from rail.store.suppressions import Suppression
from rail.testing import MemoryStore
from tests.store.test_contract import open_postgres, open_sqlite


def _entry(address: str, when: float, client: str = "app") -> Suppression:
    return Suppression(client, address, "manual", "api", when)


class _ListContract:
    def make_store(self) -> Any:
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = self.make_store()

    def test_provides_interface(self) -> None:
        """The store fully provides ISuppressionList."""
        self.assertTrue(verifyObject(ISuppressionList, self.store))

    async def _add(self, *entries: Suppression) -> None:
        for entry in entries:
            await self.store.add_suppression(entry)

    async def test_add_get_remove(self) -> None:
        """An added address reads back in any case; adding it again keeps the first entry
        and says it is not new; removing it reports whether it was listed."""
        entry = Suppression("app", "Bob@X.example", "manual", "api", 1.0, detail="asked")
        self.assertEqual(await self.store.add_suppression(entry), (entry, True))
        again = Suppression("app", "bob@x.example", "manual", "api", 2.0)
        self.assertEqual(await self.store.add_suppression(again), (entry, False))
        self.assertEqual(await self.store.get_suppression("app", "BOB@x.example"), entry)
        self.assertIsNone(await self.store.get_suppression("other", "bob@x.example"))
        self.assertTrue(await self.store.remove_suppression("app", "bob@X.example"))
        self.assertFalse(await self.store.remove_suppression("app", "bob@x.example"))
        self.assertIsNone(await self.store.get_suppression("app", "bob@x.example"))

    async def test_newest_first_in_pages(self) -> None:
        """A listing is newest first, one client's only, in pages chained by cursor."""
        await self._add(
            *(_entry(f"u{i}@x.example", float(i)) for i in range(5)),
            _entry("other@x.example", 9.0, client="other"),
        )
        first = await self.store.list_suppressions(SuppressionQuery("app", limit=3))
        self.assertEqual(
            [e.address for e in first.entries], ["u4@x.example", "u3@x.example", "u2@x.example"]
        )
        self.assertEqual(first.next_cursor, SuppressionCursor(2.0, "u2@x.example"))
        second = await self.store.list_suppressions(
            SuppressionQuery("app", limit=3, cursor=first.next_cursor)
        )
        self.assertEqual([e.address for e in second.entries], ["u1@x.example", "u0@x.example"])
        self.assertIsNone(second.next_cursor)

    async def test_same_time_entries_are_not_skipped(self) -> None:
        """Entries listed in the same second are ordered by address, so a page boundary
        between them loses none."""
        await self._add(*(_entry(f"{c}@x.example", 1.0) for c in "abcd"))
        seen: list[str] = []
        cursor = None
        while True:
            page = await self.store.list_suppressions(
                SuppressionQuery("app", limit=3, cursor=cursor)
            )
            seen += [e.address for e in page.entries]
            cursor = page.next_cursor
            if cursor is None:
                break
        self.assertEqual(seen, [f"{c}@x.example" for c in "dcba"])

    async def test_prefix_in_address_order(self) -> None:
        """``prefix`` lists the addresses starting with it (any case) in address order."""
        await self._add(
            _entry("bob@x.example", 1.0),
            _entry("bo@y.example", 2.0),
            _entry("alice@x.example", 3.0),
            _entry("bob2@x.example", 4.0),
        )
        page = await self.store.list_suppressions(SuppressionQuery("app", prefix="BO", limit=2))
        self.assertEqual([e.address for e in page.entries], ["bo@y.example", "bob2@x.example"])
        rest = await self.store.list_suppressions(
            SuppressionQuery("app", prefix="bo", limit=2, cursor=page.next_cursor)
        )
        self.assertEqual([e.address for e in rest.entries], ["bob@x.example"])
        self.assertIsNone(rest.next_cursor)

    async def test_substring_search(self) -> None:
        """``q`` finds addresses containing it (any case), newest first."""
        await self._add(
            _entry("bob@gmail.example", 1.0),
            _entry("carl@x.example", 2.0),
            _entry("dan@gmail.example", 3.0),
        )
        page = await self.store.list_suppressions(SuppressionQuery("app", q="GMAIL"))
        self.assertEqual(
            [e.address for e in page.entries], ["dan@gmail.example", "bob@gmail.example"]
        )
        self.assertIsNone(page.next_cursor)


class SQLiteListTests(_ListContract, TestCase):
    def make_store(self) -> Any:
        return open_sqlite(self)

    async def test_substring_search_is_bounded(self) -> None:
        """A ``q`` search examines at most SUPPRESSION_SCAN entries: with no match among
        them it answers an empty page and a cursor to go on from."""
        await self._add(*(_entry(f"u{i}@x.example", float(i)) for i in range(SUPPRESSION_SCAN)))
        await self._add(_entry("needle@x.example", -1.0))
        page = await self.store.list_suppressions(SuppressionQuery("app", q="needle"))
        self.assertEqual(page.entries, ())
        self.assertEqual(page.next_cursor, SuppressionCursor(0.0, "u0@x.example"))
        rest = await self.store.list_suppressions(
            SuppressionQuery("app", q="needle", cursor=page.next_cursor)
        )
        self.assertEqual([e.address for e in rest.entries], ["needle@x.example"])


class PostgresListTests(_ListContract, TestCase):
    def make_store(self) -> Any:
        return open_postgres(self)


class MemoryListTests(_ListContract, TestCase):
    def make_store(self) -> Any:
        return MemoryStore(Clock())


class CursorTests(TestCase):
    def test_round_trip(self) -> None:
        """A cursor survives encoding; anything else decodes to None."""
        cursor = SuppressionCursor(1.5, "a@b.example")
        self.assertEqual(decode_cursor(encode_cursor(cursor)), cursor)
        for junk in ("", "!!", "bnVsbA", "WzEsMl0", "WyJ4IiwiYSJd"):
            self.assertIsNone(decode_cursor(junk), junk)
