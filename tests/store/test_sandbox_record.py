"""A sandboxed delivery result and its events, recorded in one SQLite transaction."""

from __future__ import annotations

import sqlite3

from twisted.trial.unittest import TestCase

from rail.delivery.sandbox import SANDBOX_REPLY, sandbox_result
from rail.events.model import EVENT_TYPES
from rail.events.subscriptions import Subscription, Subscriptions
from rail.store.model import DeliveryJob, DueRecipient
from rail.store.schema import database_path
from tests.store.test_contract import make_message, open_sqlite


class SandboxRecordTests(TestCase):
    async def test_result_and_events_together(self) -> None:
        """Recording a sandbox result makes the recipient sent and stores its
        message.delivered event with sandbox set, for a subscribed client."""
        store = open_sqlite(self)
        store._writer.subscriptions = Subscriptions({"alice": Subscription(frozenset(EVENT_TYPES))})
        message = make_message(client="alice", recipients=("bob@example.net",))
        await store.accept(message)
        job = DeliveryJob(
            message_id=message.id,
            domain="example.net",
            client="alice",
            sender=message.sender,
            received_at=message.received_at,
            smtputf8=False,
            eight_bit=False,
            recipients=(DueRecipient(0, "bob@example.net", 0, None),),
            data=message.data,
        )
        await store.record(sandbox_result(job, message.received_at + 2))
        status = await store.status("alice", message.id)
        self.assertEqual(
            [(r.status, r.last_reply) for r in status.recipients], [("sent", SANDBOX_REPLY)]
        )
        connection = sqlite3.connect(database_path(store.directory))
        self.addCleanup(connection.close)
        rows = connection.execute(
            "SELECT type, client, message_id, recipient, sandbox FROM events"
            " WHERE type = 'message.delivered'"
        ).fetchall()
        self.assertEqual(rows, [("message.delivered", "alice", message.id, "bob@example.net", 1)])
