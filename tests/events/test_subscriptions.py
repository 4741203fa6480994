"""Parsing the event types an operator picks, and the subscriptions built from them."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.events.model import EVENT_TYPES
from rail.events.subscriptions import (
    Subscription,
    Subscriptions,
    parse_event_types,
    subscription_of,
)


class ParseTests(SynchronousTestCase):
    def test_known_types_in_canonical_order(self) -> None:
        """Known types come back once each, in EVENT_TYPES order, whatever was typed."""
        self.assertEqual(
            parse_event_types(["message.bounced", " message.delivered", "message.bounced"]),
            ("message.delivered", "message.bounced"),
        )

    def test_all_shorthand(self) -> None:
        """``all`` stands for every type, and is kept as such (later types included)."""
        self.assertEqual(parse_event_types(["message.bounced", "all"]), ("all",))
        self.assertEqual(subscription_of(("all",), None).types, frozenset(EVENT_TYPES))

    def test_none(self) -> None:
        """No names is no types."""
        self.assertEqual(parse_event_types([]), ())

    def test_unknown_type_is_named(self) -> None:
        """An unknown name fails, naming it and listing the known ones."""
        with self.assertRaises(ValueError) as caught:
            parse_event_types(["message.delivered", "message.opened"])
        self.assertIn("'message.opened'", str(caught.exception))
        self.assertIn("message.delivered", str(caught.exception))


class WantsTests(SynchronousTestCase):
    def test_wants(self) -> None:
        """A client wants exactly the types it subscribed to; others want nothing."""
        subscriptions = Subscriptions(
            {"app": Subscription(frozenset({"message.delivered"}), "https://x/e")}
        )
        self.assertTrue(subscriptions.wants("app", "message.delivered"))
        self.assertFalse(subscriptions.wants("app", "message.bounced"))
        self.assertFalse(subscriptions.wants("other", "message.delivered"))
