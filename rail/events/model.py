"""An event: one thing that happened to an app's message, to be POSTed to the app.

Pure values. Whatever decides that something happened (a delivery result, a bounce report,
a suppression) makes an :class:`Event` and hands it to the store in the same transaction
that records the happening (:func:`rail.store.events.insert_events`), so an event is never
lost nor invented by a crash between the two.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

__all__ = ["EVENT_TYPES", "Event"]

EVENT_TYPES: Final = (
    "message.accepted",
    "message.delivered",
    "message.deferred",
    "message.bounced",
    "message.expired",
    "message.suppressed",
    "message.complained",
    "message.deleted",
    "message.failed",
    "inbound.failed",
)


def _known_type(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in EVENT_TYPES:
        raise ValueError(f"unknown event type {value!r}")


@attrs.frozen
class Event:
    """``details`` is the type's own part of the payload (JSON-ready values)."""

    type: str = attrs.field(validator=_known_type)
    client: str
    message_id: str
    recipient: str | None = None
    details: Mapping[str, Any] = attrs.field(factory=dict)
    sandbox: bool = False
