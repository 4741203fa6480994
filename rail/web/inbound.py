"""``GET /api/v1/inbound/{id}``: where the webhook of an inbound message stands, for the
client it was addressed to.

Mirrors :mod:`rail.web.messages`: a message of another client answers exactly like an id
that does not exist, and so does a malformed id (docs/webhooks.md); an id older than the
records retention purged answers ``MESSAGE_EXPIRED``.
"""

from __future__ import annotations

from typing import Any

from rail.inbound.model import InboundStatus
from rail.store.model import IRetention
from rail.timefmt import rfc3339_or_none
from rail.web.messages import OwnedStatusResource

__all__ = ["InboundStatusResource", "inbound_status_to_json"]


def inbound_status_to_json(status: InboundStatus) -> dict[str, Any]:
    """The documented answer; times are RFC 3339 UTC to the second."""
    return {
        "id": status.id,
        "status": status.status,
        "from": status.sender,
        "to": list(status.recipients),
        "subject": status.subject,
        "size": status.size,
        "received_at": rfc3339_or_none(status.received_at),
        "attempts": status.attempts,
        "last_reply": status.last_reply,
        "next_attempt_at": rfc3339_or_none(status.next_attempt_at),
        "updated_at": rfc3339_or_none(status.updated_at),
        "authentication": status.authentication,
        "body_purged_at": rfc3339_or_none(status.body_purged_at),
    }


class InboundStatusResource(OwnedStatusResource):
    """Mounted at ``/api/v1/inbound``; each child path segment is a message id.
    ``store`` is an :class:`rail.inbound.model.IInboundStore`."""

    def __init__(self, store: Any) -> None:
        super().__init__(
            lambda client, id_: store.inbound_status(client, id_),
            inbound_status_to_json,
            "an inbound status",
            store.expired if IRetention.providedBy(store) else None,
        )
