"""``/api/v1/suppressions``: a client's suppression list; ``/api/v1/admin/suppressions``:
any client's, for admin certificates (``?client=NAME`` on every request).

- ``GET`` the list, newest first (``cursor``, ``limit`` 1 to 500, default 50); ``q`` finds
  addresses containing a text (examines at most 5000 entries per page, not indexed);
  ``prefix`` lists addresses starting with a text in address order (indexed)
- ``POST`` ``{"address": ..., "reason": "optional text"}``: add (``201``, or ``200`` with
  the entry already listed, which is kept)
- ``GET`` / ``DELETE`` ``.../{address}``: one entry; remove it (``404 NOT_FOUND`` when the
  address is not listed)

Entries added here have reason ``manual`` and source ``api`` (``admin``, or ``cli`` for
``rail suppressions``, on the admin path); the text given is kept as their ``detail``.
All SQL runs on the store's threads (:class:`ISuppressionList`).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.resource import Resource

from rail.store.suppressionmodel import (
    MAX_SUPPRESSION_PAGE,
    ISuppressionList,
    SuppressionPage,
    SuppressionQuery,
    decode_cursor,
    encode_cursor,
)
from rail.store.suppressions import Suppression, normalize
from rail.timefmt import rfc3339
from rail.web.admin import MAX_REASON, admin_identity, answer_later, query_arg
from rail.web.jsonapi import write_error, write_json
from rail.web.send import client_identity

__all__ = ["MAX_ADDRESS", "SuppressionsResource", "address_problem", "entry_to_json"]

_log = Logger()

MAX_ADDRESS = 320
"""The longest address the list takes, in characters."""

_NAMES = ("cursor", "limit", "q", "prefix", "client")
_SOURCES = ("admin", "cli")


def address_problem(address: Any) -> str | None:
    """Why ``address`` cannot be listed, or None: one address, ``local@domain``."""
    if not isinstance(address, str):
        return "address: a string"
    text = address.strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or len(text) > MAX_ADDRESS:
        return f"address: one address, local@domain, at most {MAX_ADDRESS} characters"
    if any(c.isspace() or ord(c) < 32 or c in "<>" or 0x7F <= ord(c) < 0xA0 for c in text):
        return "address: no spaces, angle brackets or control characters"
    return None


def entry_to_json(entry: Suppression) -> dict[str, Any]:
    return {
        "address": entry.address,
        "reason": entry.reason,
        "source": entry.source,
        "message_id": entry.message_id,
        "detail": entry.detail,
        "created_at": rfc3339(entry.created_at),
    }


def _page_to_json(page: SuppressionPage) -> dict[str, Any]:
    return {
        "suppressions": [entry_to_json(e) for e in page.entries],
        "next_cursor": None if page.next_cursor is None else encode_cursor(page.next_cursor),
    }


def _body(request: Any) -> dict[str, Any] | str:
    raw = request.content.read() if request.content is not None else b""
    try:
        value = json.loads(raw)
    except ValueError:
        return "the body is not valid JSON"
    if not isinstance(value, dict):
        return "the body must be a JSON object"
    return value


class _Base(Resource):
    """Shared by the list and its entries: who asks, and for which client's list."""

    def __init__(self, store: ISuppressionList, clock: IReactorTime, admin: bool) -> None:
        super().__init__()
        self.store = store
        self.clock = clock
        self.admin = admin

    def owner(self, request: Any) -> tuple[str, str] | bytes:
        """(the actor's name, the client whose list it is), or the error body set."""
        if self.admin:
            identity = admin_identity(request)
            if isinstance(identity, bytes):
                return identity
            client = query_arg(request, "client")
            if not client:
                return write_error(
                    request, 400, "INVALID_REQUEST", "client: the client whose list this is"
                )
            return identity.name, client
        identity = client_identity(request)
        if isinstance(identity, bytes):
            return identity
        if identity.role == "admin":
            return write_error(
                request,
                403,
                "NOT_A_CLIENT",
                "an admin certificate has no suppression list;"
                " use /api/v1/admin/suppressions?client=NAME",
            )
        if query_arg(request, "client") is not None:
            return write_error(
                request, 400, "INVALID_REQUEST", "client: only admin certificates choose a list"
            )
        return identity.name, identity.name

    def unknown(self, request: Any) -> str | None:
        for key in request.args:
            name = key.decode("utf-8", "replace")
            if name not in _NAMES:
                return f"unknown query parameter {name!r}"
        return None

    def not_allowed(self, request: Any, allowed: bytes) -> bytes:
        request.setHeader(b"Allow", allowed)
        method = request.method.decode("ascii", "replace")
        return write_error(request, 405, "METHOD_NOT_ALLOWED", f"{method} is not allowed here")


class SuppressionsResource(_Base):
    """Mounted at ``/api/v1/suppressions`` (``admin=False``) and
    ``/api/v1/admin/suppressions`` (``admin=True``)."""

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"":
            return self  # a trailing slash: the list itself
        return _Entry(self, path)

    def render(self, request: Any) -> Any:
        owner = self.owner(request)
        if isinstance(owner, bytes):
            return owner
        if request.method in (b"GET", b"HEAD"):
            return self._list(request, *owner)
        if request.method == b"POST":
            return self._add(request, *owner)
        return self.not_allowed(request, b"GET, HEAD, POST")

    def _list(self, request: Any, actor: str, client: str) -> Any:
        problem = self.unknown(request)
        limit_text = query_arg(request, "limit")
        if problem is None and limit_text is not None:
            if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_SUPPRESSION_PAGE:
                problem = f"limit: must be a number from 1 to {MAX_SUPPRESSION_PAGE}"
        cursor_text = query_arg(request, "cursor")
        cursor = None if cursor_text is None else decode_cursor(cursor_text)
        if problem is None and cursor_text is not None and cursor is None:
            problem = "cursor: not a cursor this API returned"
        q, prefix = query_arg(request, "q"), query_arg(request, "prefix")
        if problem is None and q is not None and prefix is not None:
            problem = "q and prefix cannot be combined"
        for name, text in (("q", q), ("prefix", prefix)):
            if problem is None and text is not None and not 1 <= len(text) <= MAX_ADDRESS:
                problem = f"{name}: 1 to {MAX_ADDRESS} characters"
        if problem is not None:
            return write_error(request, 400, "INVALID_REQUEST", problem)
        query = SuppressionQuery(
            client=client,
            limit=int(limit_text) if limit_text is not None else 50,
            cursor=cursor,
            q=q,
            prefix=prefix,
        )
        return answer_later(
            request,
            lambda: self.store.list_suppressions(query),
            lambda page: write_json(request, 200, _page_to_json(page)),
            "suppression listing",
            actor,
        )

    def _add(self, request: Any, actor: str, client: str) -> Any:
        body = _body(request)
        if isinstance(body, str):
            return write_error(request, 400, "INVALID_REQUEST", body)
        fields = {"address", "reason"} | ({"source"} if self.admin else set())
        unknown = sorted(set(body) - fields)
        detail = body.get("reason")
        source = body.get("source", "admin") if self.admin else "api"
        problem = self.unknown(request)
        problem = problem or (f"unknown field {unknown[0]!r}" if unknown else None)
        problem = problem or address_problem(body.get("address"))
        if problem is None and detail is not None:
            if not isinstance(detail, str) or not 1 <= len(detail) <= MAX_REASON:
                problem = f"reason: a string of 1 to {MAX_REASON} characters"
            elif any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in detail):
                problem = "reason: control characters are not allowed"
        if problem is None and source not in (_SOURCES if self.admin else ("api",)):
            problem = f"source: one of {', '.join(_SOURCES)}"
        if problem is not None:
            return write_error(request, 400, "INVALID_REQUEST", problem)
        entry = Suppression(
            client=client,
            address=body["address"],
            reason="manual",
            source=source,
            created_at=self.clock.seconds(),
            detail=detail,
        )

        def render(outcome: tuple[Suppression, bool]) -> bytes:
            listed, new = outcome
            if new:
                _log.info(
                    "{actor} suppressed {rcpt} for {client}",
                    actor=actor,
                    rcpt=listed.address,
                    client=client,
                )
            return write_json(request, 201 if new else 200, entry_to_json(listed))

        return answer_later(
            request, lambda: self.store.add_suppression(entry), render, "suppression add", actor
        )


class _Entry(_Base):
    isLeaf = True

    def __init__(self, parent: SuppressionsResource, segment: bytes) -> None:
        super().__init__(parent.store, parent.clock, parent.admin)
        # twisted.web has percent-decoded the segment already.
        self.address = segment.decode("utf-8", "replace")

    def render(self, request: Any) -> Any:
        owner = self.owner(request)
        if isinstance(owner, bytes):
            return owner
        actor, client = owner
        if request.postpath not in ([], [b""]):
            return write_error(request, 404, "NOT_FOUND", "no such resource")
        problem = self.unknown(request) or address_problem(self.address)
        if problem is not None:
            return write_error(request, 400, "INVALID_REQUEST", problem)
        address = normalize(self.address)
        if request.method in (b"GET", b"HEAD"):

            def found(entry: Suppression | None) -> bytes:
                if entry is None:
                    return write_error(request, 404, "NOT_FOUND", "the address is not listed")
                return write_json(request, 200, entry_to_json(entry))

            return answer_later(
                request,
                lambda: self.store.get_suppression(client, address),
                found,
                "suppression look-up",
                actor,
            )
        if request.method == b"DELETE":

            def removed(listed: bool) -> bytes:
                if not listed:
                    return write_error(request, 404, "NOT_FOUND", "the address is not listed")
                _log.info(
                    "{actor} unsuppressed {rcpt} for {client}",
                    actor=actor,
                    rcpt=address,
                    client=client,
                )
                return write_json(request, 200, {"address": address, "removed": True})

            return answer_later(
                request,
                lambda: self.store.remove_suppression(client, address),
                removed,
                "suppression removal",
                actor,
            )
        return self.not_allowed(request, b"GET, HEAD, DELETE")
