"""Which events each client asked for, and where they go.

Events are opt-in per client and per type: a client that picked none gets no event rows at
all, so Rail without subscribers writes nothing more than before. The writer thread holds
one :class:`Subscriptions` value and filters events through it before they are stored; the
service replaces the value (a reference swap, safe across threads) when the settings change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import attrs

from rail.events.model import EVENT_TYPES, Event

__all__ = [
    "ALL",
    "NO_SUBSCRIPTIONS",
    "Subscription",
    "Subscriptions",
    "parse_event_types",
    "subscription_of",
]

ALL: Final = "all"
"""Shorthand for every type, kept as such: a client that picked ``all`` also gets the
types a later Rail adds."""


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


def parse_event_types(names: Iterable[str]) -> tuple[str, ...]:
    """The types an operator picked, as stored: ``("all",)`` if ``all`` is among them,
    else the known types named, in :data:`EVENT_TYPES` order, each once; ``()`` for none.
    Raises ValueError naming the first unknown type."""
    picked = set()
    for name in names:
        name = name.strip()
        if name != ALL and name not in EVENT_TYPES:
            raise ValueError(
                f"unknown event type {name!r} (known: {ALL}, {', '.join(EVENT_TYPES)})"
            )
        picked.add(name)
    if ALL in picked:
        return (ALL,)
    return tuple(t for t in EVENT_TYPES if t in picked)


def subscription_of(types: Iterable[str], url: str | None) -> Subscription:
    """The :class:`Subscription` of stored ``types`` (``all`` expanded)."""
    chosen = frozenset(types)
    return Subscription(frozenset(EVENT_TYPES) if ALL in chosen else chosen, url)
