"""The console's message trail (a message's stored events, oldest first) and its
overview's deferring domains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from rail.events.model import EVENT_TYPES, Event
from rail.events.subscriptions import Subscription, Subscriptions
from rail.store.events import insert_events
from rail.store.model import JobResult, RecipientUpdate
from rail.store.schema import open_writable
from rail.store.trail import Backlog, message_events, webhook_backlog
from tests.store.test_contract import make_message, open_postgres, open_sqlite
from tests.store.test_inbound import make_inbound
from tests.store.test_inboundlist import check_recent_inbound

_ID = "01J0000000000000000000000A"
_OTHER = "01J0000000000000000000000B"
_EVERYONE = Subscriptions({name: Subscription(frozenset(EVENT_TYPES)) for name in ("app", "shop")})


class MessageEventsTests(TestCase):
    def test_events_of_one_message_oldest_first(self) -> None:
        """Only the asked message's events come back, oldest first, with their details
        and delivery status."""
        directory = Path(self.mktemp())
        directory.mkdir()
        connection = open_writable(directory)
        self.addCleanup(connection.close)
        everything = Subscriptions({"app": Subscription(frozenset(EVENT_TYPES))})
        connection.execute("BEGIN")
        insert_events(
            connection,
            [Event("message.delivered", "app", _ID, "a@x.test", {"mx": "mx.x.test"})],
            2000.0,
            everything,
        )
        insert_events(
            connection,
            [
                Event("message.accepted", "app", _ID, None, {"recipients": 1}),
                Event("message.accepted", "app", _OTHER),
            ],
            1000.0,
            everything,
        )
        connection.execute("COMMIT")
        records = message_events(connection, _ID)
        self.assertEqual(
            [(r.type, r.recipient, r.created_at, r.status) for r in records],
            [
                ("message.accepted", None, 1000.0, "queued"),
                ("message.delivered", "a@x.test", 2000.0, "queued"),
            ],
        )
        self.assertEqual(records[1].details, {"mx": "mx.x.test"})


class _StoreReads:
    """The console's reads through a store; mixed into a TestCase with ``make_store``."""

    def make_store(self) -> Any:
        raise NotImplementedError

    async def test_domains_ranked_by_deferred_recipients(self) -> None:
        """Domains are ranked by deferred recipients among those due soonest, each with
        the reply of its latest deferral; queued recipients are not counted; an empty
        queue has none."""
        self.assertEqual(await self.make_store().deferring_domains(), ())
        store = self.make_store()
        replies = {
            "a@slow.example": "451 slow 1",
            "b@slow.example": "451 slow 2",
            "c@busy.example": "421 busy",
        }
        for when, address in enumerate(replies):
            message = make_message(recipients=(address,))
            await store.accept(message)
            update = RecipientUpdate(0, "deferred", replies[address], "mx", 5000.0 + when)
            await store.record(JobResult(message.id, 1000.0 + when, (update,)))
        await store.accept(make_message(recipients=("q@queued.example",)))
        found = await store.deferring_domains()
        self.assertEqual(
            [(d.domain, d.deferred, d.last_reply) for d in found],
            [("slow.example", 2, "451 slow 2"), ("busy.example", 1, "421 busy")],
        )

    async def test_pending_jobs_per_client(self) -> None:
        """Pending event jobs and inbound webhook jobs are counted per client."""
        store = self.make_store()
        await store.accept_inbound(make_inbound())
        events = [
            Event("message.accepted", "app", _ID),
            Event("message.accepted", "app", _OTHER),
            Event("message.accepted", "shop", _ID),
        ]
        await store._run(lambda c: (insert_events(c, events, 1000.0, _EVERYONE), 0), True)
        backlog = await store.webhook_backlog()
        self.assertEqual(
            (backlog.events, backlog.inbound, backlog.capped),
            ({"app": 2, "shop": 1}, {"app1": 1, "app2": 1}, False),
        )

    async def test_newest_inbound_first_with_jobs_and_retry(self) -> None:
        """Inbound messages come newest first with their authentication results and one
        job per client; ``before`` pages on; a retry makes the pending jobs due now and
        says how many."""
        await check_recent_inbound(self, self.make_store())  # type: ignore[arg-type]


class SQLiteStoreReadTests(_StoreReads, TestCase):
    def make_store(self) -> Any:
        return open_sqlite(self, Path(self.mktemp()) / "queue")


class PostgresStoreReadTests(_StoreReads, TestCase):
    def make_store(self) -> Any:
        return open_postgres(self)


class WebhookBacklogTests(TestCase):
    def test_capped(self) -> None:
        """A kind with as many pending jobs as the scan reads marks the counts as lower
        bounds; an empty store has no backlog."""
        directory = Path(self.mktemp())
        directory.mkdir()
        connection = open_writable(directory)
        self.addCleanup(connection.close)
        self.assertEqual(webhook_backlog(connection), Backlog({}, {}, False))
        connection.execute("BEGIN")
        events = [Event("message.accepted", "app", _ID), Event("message.accepted", "app", _OTHER)]
        insert_events(connection, events, 1000.0, _EVERYONE)
        connection.execute("COMMIT")
        self.assertEqual(webhook_backlog(connection, scan=2), Backlog({"app": 2}, {}, True))
