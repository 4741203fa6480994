"""Which events each client asked for, and where they go.

Events are opt-in per client and per type: a client that picked none gets no event rows at
all, so Rail without subscribers writes nothing more than before. The writer thread holds
one :class:`Subscriptions` value and filters events through it before they are stored; the
service replaces the value (a reference swap, safe across threads) when the settings change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from rail.events.model import Event

__all__ = ["NO_SUBSCRIPTIONS", "Subscription", "Subscriptions"]


@attrs.frozen
class Subscription:
    """``url`` None: the client's webhook URL (from its certificate) receives the events."""

    types: frozenset[str]
    url: str | None = None


@attrs.frozen
class Subscriptions:
    by_client: Mapping[str, Subscription] = attrs.field(factory=dict)

    def wants(self, client: str, event_type: str) -> bool:
        """Whether ``client`` subscribed to ``event_type``: asked before building an event
        that costs something to build (a read), so nobody subscribed costs nothing."""
        subscription = self.by_client.get(client)
        return subscription is not None and event_type in subscription.types

    def wanted(self, events: Iterable[Event]) -> list[Event]:
        """The events whose client subscribed to their type."""
        kept = []
        for event in events:
            subscription = self.by_client.get(event.client)
            if subscription is not None and event.type in subscription.types:
                kept.append(event)
        return kept


NO_SUBSCRIPTIONS = Subscriptions()
