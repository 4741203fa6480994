"""``GET /api/v1/messages``: a client lists and searches its own messages, newest first.

Query parameters: ``recipient`` (an address, exactly), ``status`` (see
:data:`~rail.store.adminmodel.LISTED_STATUSES`), ``since`` and ``until`` (RFC 3339 times
bounding ``received_at``), ``request_id`` (the message sent under that id, remembered 24
hours, and as long as the message is kept for messages sent with one), ``tag`` (exactly),
``metadata[key]=value`` or ``metadata.key=value`` (each pair must match), ``cursor`` (the
previous page's ``next_cursor``) and ``limit`` (1 to 500, default 50). Only the caller's
own messages are ever listed: the store query is narrowed to its client name before
anything else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rail.store.adminmodel import IAdminQueue, QueueQuery
from rail.store.model import IQueueStore
from rail.web.admin import answer_later, page_to_json, query_arg, query_problem
from rail.web.jsonapi import write_error, write_json
from rail.web.messages import MessageStatusResource
from rail.web.metaquery import metadata_args, tag_problem
from rail.web.send import client_identity

__all__ = ["MessagesResource"]

_NAMES = ("recipient", "status", "since", "until", "request_id", "tag", "cursor", "limit")


def _time(text: str | None, name: str) -> float | str | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return f"{name}: an RFC 3339 time such as 2026-01-31T12:00:00Z"
    if when.tzinfo is None:
        return f"{name}: the time needs a zone (Z or +hh:mm)"
    return when.timestamp()


class MessagesResource(MessageStatusResource):
    """``/api/v1/messages``: the listing itself, and each message's status below it."""

    def __init__(self, store: IQueueStore) -> None:
        super().__init__(store)
        self._store = store

    def render(self, request: Any) -> Any:
        if request.method not in (b"GET", b"HEAD") or not IAdminQueue.providedBy(self._store):
            return super().render(request)
        identity = client_identity(request)
        if isinstance(identity, bytes):
            return identity
        searched = metadata_args(request)
        if isinstance(searched, str):
            return write_error(request, 400, "INVALID_REQUEST", searched)
        metadata, metadata_names = searched
        problem = query_problem(request, _NAMES + metadata_names) or tag_problem(
            query_arg(request, "tag")
        )
        since = _time(query_arg(request, "since"), "since")
        until = _time(query_arg(request, "until"), "until")
        for value in (since, until):
            if problem is None and isinstance(value, str):
                problem = value
        if problem is not None:
            return write_error(request, 400, "INVALID_REQUEST", problem)
        limit = query_arg(request, "limit")
        query = QueueQuery(
            client=identity.name,
            status=query_arg(request, "status"),
            recipient=query_arg(request, "recipient"),
            newer_than=since if isinstance(since, float) else None,
            older_than=until if isinstance(until, float) else None,
            request_id=query_arg(request, "request_id"),
            cursor=query_arg(request, "cursor"),
            limit=int(limit) if limit is not None else 50,
            tag=query_arg(request, "tag"),
            metadata=metadata,
        )
        queue: Any = self._store
        return answer_later(
            request,
            lambda: queue.list_messages(query),
            lambda page: write_json(request, 200, page_to_json(page)),
            "message listing",
            identity.name,
        )
