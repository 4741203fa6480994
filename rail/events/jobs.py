"""An event as a durable job: what a claim hands the event dispatcher, and what one POST of
it comes to.

Pure values. The claim reads the event row and, from the message's stored meta, its
``request_id``, ``tag`` and ``metadata`` (:mod:`rail.store.events`); the dispatcher builds
the payload from that alone (:mod:`rail.events.payload`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs
from zope.interface import Interface

__all__ = ["EventJob", "EventResult", "IEventStore"]


@attrs.frozen
class EventJob:
    """A due POST of one event to its client's application."""

    id: str
    """The event's ULID: its ``id`` in the payload and its ``webhook-id``."""
    client: str
    type: str
    message_id: str
    recipient: str | None
    sandbox: bool
    created_at: float
    details: Mapping[str, Any]
    attempts: int
    request_id: str | None = None
    tag: str | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def key(self) -> str:
        """Identifies the job among those in flight."""
        return self.id


@attrs.frozen
class EventResult:
    """The outcome of one POST. ``next_attempt_at`` is set for ``deferred`` only; ``reply``
    says what happened (``HTTP 503 Service Unavailable``, ``timeout after 30s``...)."""

    event_id: str
    attempted_at: float
    status: Literal["delivered", "deferred", "failed"]
    reply: str
    next_attempt_at: float | None = None


class IEventStore(Interface):
    """The store's side of event delivery. Every method returns a Deferred and never
    blocks. (The in-memory fake of :mod:`rail.testing` has no events.)"""

    subscriptions: Any
    """The current :class:`rail.events.subscriptions.Subscriptions`: events of clients
    that did not subscribe are not stored. Replaced whole when the settings change."""

    def claim_events(now: float, limit: int, exclude: frozenset[str]) -> Any:  # noqa: N805
        """Fires with up to ``limit`` :class:`EventJob` due at ``now`` (oldest due first),
        none whose id is in ``exclude``. A stored event that cannot be read is quarantined
        by the claim (reported to the quarantine observers) and not handed out."""

    def record_event(result: EventResult) -> Any:  # noqa: N805
        """Make ``result`` durable; fires with whether the event was still pending, or
        with :class:`rail.store.model.Stale` when the store is shared and another node
        holds the event now (nothing was written)."""

    def quarantine_event(event_id: str, kind: Any, reason: str, now: float) -> Any:  # noqa: N805
        """Make event ``event_id`` ``failed`` for good with ``last_reply``
        ``quarantined: <reason>``; fires with True once on disk, False if not pending."""

    def event_counts() -> Any:
        """Fires with the number of event jobs in each status."""

    def observe_events(callback: Any) -> None:  # noqa: N805
        """Call ``callback()`` on the reactor whenever new events were stored."""
