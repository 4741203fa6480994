"""A node moving to PostgreSQL with work left in its SQLite queue is refused, not started
with that mail stranded (rail.store.leftover)."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from rail.events.model import EVENT_TYPES
from rail.events.subscriptions import Subscription, Subscriptions
from rail.store.configured import open_store
from rail.store.leftover import Leftover, left_in, refuse_leftover
from rail.store.model import JobResult, RecipientUpdate, StoreUnavailableError
from tests.integration.fixtures import make_config, storage_overrides
from tests.store.test_contract import make_message, open_sqlite
from tests.store.test_inbound import make_inbound


class LeftoverTests(TestCase):
    def setUp(self) -> None:
        self.data_dir = Path(self.mktemp()).resolve()
        self.queue = self.data_dir / "queue"

    def test_no_queue_file_holds_nothing(self) -> None:
        self.assertFalse(left_in(self.queue))
        refuse_leftover(self.queue)
        self.assertFalse(self.queue.exists())  # looking created nothing

    async def test_what_is_pending_is_counted(self) -> None:
        """Outbound messages with a recipient not final, inbound webhook POSTs and event
        POSTs not yet made; a message whose recipients are all final is not counted."""
        store = open_sqlite(self, self.queue)
        store.subscriptions = Subscriptions({"watched": Subscription(frozenset(EVENT_TYPES))})
        done = make_message()
        await store.accept(done)
        await store.accept(make_message(recipients=("a@example.net", "b@example.net")))
        await store.accept(make_message(client="watched"))  # its message.accepted event
        await store.accept_inbound(make_inbound())  # two clients: two POSTs
        await store.record(
            JobResult(done.id, done.received_at + 1, (RecipientUpdate(0, "sent", "250 ok"),))
        )
        await store.close()
        self.assertEqual(left_in(self.queue), Leftover(messages=2, webhooks=2, events=1))
        with self.assertRaises(StoreUnavailableError) as raised:
            refuse_leftover(self.queue)
        message = str(raised.exception)
        self.assertIn(str(self.queue / "queue.sqlite3"), message)
        self.assertIn("2 outbound messages, 2 inbound webhook POSTs, 1 event POST", message)
        self.assertIn("storage.backend: sqlite", message)

    async def test_a_drained_queue_is_no_obstacle(self) -> None:
        store = open_sqlite(self, self.queue)
        message = make_message()
        await store.accept(message)
        await store.record(
            JobResult(message.id, message.received_at + 1, (RecipientUpdate(0, "sent", "250"),))
        )
        await store.close()
        self.assertFalse(left_in(self.queue))
        refuse_leftover(self.queue)

    def test_an_unreadable_file_is_refused(self) -> None:
        """The file cannot tell what it holds: refused, saying so (fail closed)."""
        self.queue.mkdir(parents=True)
        (self.queue / "queue.sqlite3").write_bytes(b"not a database, " * 512)
        with self.assertRaises(StoreUnavailableError) as raised:
            refuse_leftover(self.queue)
        self.assertIn("cannot be read", str(raised.exception))

    async def test_the_postgresql_store_is_not_opened_over_pending_mail(self) -> None:
        """Through the start's own path (rail.store.configured.open_store, which the
        server calls before it binds any port)."""
        store = open_sqlite(self, self.queue)
        await store.accept(make_message())
        await store.close()
        config = make_config(self.data_dir, **storage_overrides(self, "postgresql"))
        with self.assertRaises(StoreUnavailableError) as raised:
            open_store(config, reactor)
        self.assertIn("1 outbound message)", str(raised.exception))
