"""The console's message trail: a message's stored events, oldest first."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import TestCase

from rail.events.model import EVENT_TYPES, Event
from rail.events.subscriptions import Subscription, Subscriptions
from rail.store.events import insert_events
from rail.store.schema import open_writable
from rail.store.trail import message_events

_ID = "01J0000000000000000000000A"
_OTHER = "01J0000000000000000000000B"


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
