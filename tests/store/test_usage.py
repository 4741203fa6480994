"""The rate limits' seed: what each client sent in the last day, read from the queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from twisted.trial.unittest import TestCase

from rail.store import usage
from rail.store.schema import open_writable
from tests.store.test_contract import make_message, open_postgres, open_sqlite

T = 1_789_999_200.0  # a whole minute


class ClientUsageTests(TestCase):
    async def test_counts_per_client_and_minute(self) -> None:
        """Messages and their recipients are summed per client and minute, from ``since``
        up to (not including) ``until``; DSNs (null sender) do not count."""
        await self._counts(open_sqlite(self))

    async def test_counts_on_postgresql(self) -> None:
        """The same counts from the PostgreSQL store (its own rounding to the minute)."""
        await self._counts(open_postgres(self))

    async def _counts(self, store: Any) -> None:
        messages = [
            make_message(client="a", received_at=T - 100_000),  # before since
            make_message(client="a", received_at=T + 1, recipients=("x@e.net", "y@e.net")),
            make_message(client="a", received_at=T + 59),
            make_message(client="a", received_at=T + 61),
            make_message(client="b", received_at=T + 2, recipients=("x@e.net",) * 3),
            make_message(client="a", received_at=T + 3600),  # not before until
            attrs.evolve(make_message(client="a", received_at=T + 5), sender=""),
        ]
        for message in messages:
            await store.accept(message)
        rows = await store.client_usage(T - 86400, T + 3600)
        self.assertEqual(sorted(rows), [("a", T, 2, 3), ("a", T + 60, 1, 1), ("b", T, 1, 3)])

    def test_reads_a_range_of_the_primary_key(self) -> None:
        """The query walks the primary key's range of the last day (a ULID starts with
        its time), not the whole table nor the per-client index."""
        connection = open_writable(Path(self.mktemp()))
        self.addCleanup(connection.close)
        plan = connection.execute("EXPLAIN QUERY PLAN " + usage.USAGE_QUERY, ("0", 0, 1))
        details = [row[3] for row in plan.fetchall()]
        self.assertIn("SEARCH messages USING INDEX sqlite_autoindex_messages_1 (id>?)", details)
