"""``GET /api/v1/messages/{id}``: where a message the caller sent stands.

Only the owner may look: a message of another client answers exactly like an id that
does not exist, and so does a malformed id, so the endpoint reveals nothing about what
other apps send (or which ids are in use). An id not found whose time is older than the
records retention has purged answers ``MESSAGE_EXPIRED`` instead of ``NOT_FOUND``: that
depends on the id and the clock only, so it reveals nothing either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from rail.store.ids import is_message_id
from rail.store.model import (
    IQueueStore,
    IRetention,
    MessageMeta,
    MessageStatus,
    RecipientStatus,
    StoreUnavailableError,
)
from rail.timefmt import rfc3339_or_none
from rail.web.jsonapi import JSONResource, write_error, write_json
from rail.web.send import RETRY_AFTER, client_identity, finish_later

__all__ = ["MessageStatusResource", "OwnedStatusResource", "meta_to_json", "status_to_json"]

_log = Logger()


def _recipient_to_json(recipient: RecipientStatus) -> dict[str, Any]:
    return {
        "address": recipient.address,
        "status": recipient.status,
        "attempts": recipient.attempts,
        "last_reply": recipient.last_reply,
        "next_attempt_at": rfc3339_or_none(recipient.next_attempt_at),
        "updated_at": rfc3339_or_none(recipient.updated_at),
        "reports": [
            {
                "kind": report.kind,
                "status": report.status,
                "classification": report.classification,
                "detail": report.detail,
                "reporter": report.reporter,
                "at": rfc3339_or_none(report.created_at),
            }
            for report in recipient.reports
        ],
    }


def status_to_json(status: MessageStatus) -> dict[str, Any]:
    """The documented answer (docs/api.md); times are RFC 3339 UTC to the second."""
    return {
        "id": status.id,
        "status": status.status,
        "channel": status.channel,
        "from": status.sender,
        "size": status.size,
        "received_at": rfc3339_or_none(status.received_at),
        "reason": status.reason,
        "body_purged_at": rfc3339_or_none(status.body_purged_at),
        "recipients": [_recipient_to_json(r) for r in status.recipients],
        **meta_to_json(status.meta),
    }


def meta_to_json(meta: MessageMeta) -> dict[str, Any]:
    """What the app attached, echoed: ``request_id`` and ``tag`` (null when absent) and
    ``metadata`` ({} when none)."""
    return {
        "request_id": meta.request_id,
        "tag": meta.tag,
        "metadata": dict(meta.metadata),
    }


def _not_found(request: Any) -> bytes:
    return write_error(request, 404, "NOT_FOUND", "no such message")


def _expired(request: Any) -> bytes:
    return write_error(
        request,
        404,
        "MESSAGE_EXPIRED",
        "no such message; its id is older than the records retention deleted"
        " (storage.retention.record), so it may have been one of them",
    )


class _Owned(JSONResource):
    def __init__(self, owner: OwnedStatusResource, segment: bytes) -> None:
        super().__init__()
        self._owner = owner
        self._segment = segment

    def render_GET(self, request: Any) -> Any:
        identity = client_identity(request)
        if isinstance(identity, bytes):
            return identity
        message_id = self._segment.decode("ascii", "replace")
        if not is_message_id(message_id):
            return _not_found(request)
        answer = maybeDeferred(self._owner.lookup, identity.name, message_id)
        answer.addCallback(self._found, request, message_id)
        answer.addErrback(self._failed, request, identity.name, message_id)
        return finish_later(request, answer)

    def _found(self, status: Any, request: Any, message_id: str) -> bytes:
        if status is None:
            if self._owner.expired(message_id):
                return _expired(request)
            return _not_found(request)
        return write_json(request, 200, self._owner.to_json(status))

    def _failed(self, failure: Failure, request: Any, client: str, message_id: str) -> bytes:
        what = self._owner.what
        if failure.check(StoreUnavailableError):
            _log.warn(
                "store unavailable for {what} query by {client}: {reason}",
                what=what,
                client=client,
                reason=str(failure.value),
            )
        else:
            _log.failure(
                "{what} query failed", failure, what=what, client=client, msg_id=message_id
            )
        request.setHeader(b"Retry-After", str(RETRY_AFTER).encode("ascii"))
        return write_error(
            request, 503, "QUEUE_UNAVAILABLE", "the queue is unavailable; retry later"
        )


class OwnedStatusResource(Resource):
    """A collection whose child path segment is a message id that only its owner may
    see: ``lookup(client, id)`` fires with the status or None, ``to_json`` renders it;
    ``expired(id)`` says whether an id not found may have been purged by retention."""

    def __init__(
        self,
        lookup: Callable[[str, str], Any],
        to_json: Callable[[Any], dict[str, Any]],
        what: str,
        expired: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__()
        self.lookup = lookup
        self.to_json = to_json
        self.what = what
        self.expired = expired or (lambda message_id: False)

    def getChild(self, path: bytes, request: Any) -> Resource:
        return _Owned(self, path)

    def render(self, request: Any) -> bytes:
        return write_error(request, 404, "NOT_FOUND", "no such resource")


class MessageStatusResource(OwnedStatusResource):
    """Mounted at ``/api/v1/messages``; each child path segment is a message id."""

    def __init__(self, store: IQueueStore) -> None:
        super().__init__(
            lambda client, id_: store.status(client, id_),
            status_to_json,
            "a status",
            store.expired if IRetention.providedBy(store) else None,
        )
