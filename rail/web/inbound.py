"""``GET /api/v1/inbound/{id}``: where the webhook of an inbound message stands, for the
client it was addressed to.

Mirrors :mod:`rail.web.messages`: a message of another client answers exactly like an id
that does not exist, and so does a malformed id (docs/webhooks.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from rail.inbound.model import InboundStatus
from rail.store.ids import is_message_id
from rail.store.model import StoreUnavailableError
from rail.web.jsonapi import JSONResource, write_error, write_json
from rail.web.send import RETRY_AFTER, client_identity, finish_later

__all__ = ["InboundStatusResource", "inbound_status_to_json"]

_log = Logger()


def _rfc3339(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def inbound_status_to_json(status: InboundStatus) -> dict[str, Any]:
    """The documented answer; times are RFC 3339 UTC to the second."""
    return {
        "id": status.id,
        "status": status.status,
        "from": status.sender,
        "to": list(status.recipients),
        "subject": status.subject,
        "size": status.size,
        "received_at": _rfc3339(status.received_at),
        "attempts": status.attempts,
        "last_reply": status.last_reply,
        "next_attempt_at": _rfc3339(status.next_attempt_at),
        "updated_at": _rfc3339(status.updated_at),
        "authentication": status.authentication,
    }


def _not_found(request: Any) -> bytes:
    return write_error(request, 404, "NOT_FOUND", "no such message")


class InboundStatusResource(Resource):
    """Mounted at ``/api/v1/inbound``; each child path segment is a message id.
    ``store`` is an :class:`rail.inbound.model.IInboundStore`."""

    def __init__(self, store: Any) -> None:
        cast(Any, super()).__init__()  # Resource is untyped (mypy --strict)
        self._store = store

    def getChild(self, path: bytes, request: Any) -> Resource:
        return _Inbound(self._store, path)

    def render(self, request: Any) -> bytes:
        return write_error(request, 404, "NOT_FOUND", "no such resource")


class _Inbound(JSONResource):
    def __init__(self, store: Any, segment: bytes) -> None:
        cast(Any, super()).__init__()  # Resource is untyped (mypy --strict)
        self._store = store
        self._segment = segment

    def render_GET(self, request: Any) -> Any:
        identity = client_identity(request)
        if isinstance(identity, bytes):
            return identity
        message_id = self._segment.decode("ascii", "replace")
        if not is_message_id(message_id):
            return _not_found(request)
        answer = maybeDeferred(self._store.inbound_status, identity.name, message_id)
        answer.addCallback(self._found, request)
        answer.addErrback(self._failed, request, identity.name, message_id)
        return finish_later(request, answer)

    def _found(self, status: InboundStatus | None, request: Any) -> bytes:
        if status is None:
            return _not_found(request)
        return write_json(request, 200, inbound_status_to_json(status))

    def _failed(self, failure: Failure, request: Any, client: str, message_id: str) -> bytes:
        if cast(Any, failure).check(StoreUnavailableError):
            _log.warn(
                "store unavailable for an inbound status query by {client}: {reason}",
                client=client,
                reason=str(failure.value),
            )
        else:
            _log.failure("inbound status query failed", failure, client=client, msg_id=message_id)
        request.setHeader(b"Retry-After", str(RETRY_AFTER).encode("ascii"))
        return write_error(
            request, 503, "QUEUE_UNAVAILABLE", "the queue is unavailable; retry later"
        )
