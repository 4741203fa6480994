"""``/api/v1/admin/...``: the queue for operators holding an admin certificate.

Every resource here first asks :func:`admin_identity`: no client certificate answers
``401 CLIENT_CERTIFICATE_REQUIRED``, a client (application) certificate ``403
ADMIN_REQUIRED``. The queue work runs on the store's writer thread (:class:`IAdminQueue`);
each action is logged with the admin's name.

- ``GET messages?status=&client=&domain=&recipient=&sender=&older_than=&tag=&request_id=``
  ``&metadata[key]=&cursor=&limit=``
- ``GET messages/{id}``
- ``POST messages/{id}/retry|hold|release|delete|bounce`` (JSON ``{"reason": ...}``;
  required for delete)
- ``POST retry`` with ``{"all": true}`` or ``{"domain": "example.com"}``
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from rail.config.units import parse_duration
from rail.mail.headers import parse_header_section
from rail.policy.identity import ClientIdentity
from rail.store.adminmodel import (
    LISTED_STATUSES,
    MAX_PAGE,
    IAdminQueue,
    MessageDetail,
    MessageSummary,
    Page,
    QueueQuery,
    RetryTarget,
)
from rail.store.deliveries import DSNBuilder
from rail.store.ids import is_message_id
from rail.store.model import StoreUnavailableError
from rail.timefmt import rfc3339
from rail.web.jsonapi import JSONResource, NotFound, write_error, write_json
from rail.web.messages import meta_to_json, status_to_json
from rail.web.metaquery import metadata_args, tag_problem
from rail.web.send import RETRY_AFTER, client_identity, finish_later

__all__ = [
    "MAX_REASON",
    "AdminJSONResource",
    "AdminResource",
    "admin_identity",
    "answer_later",
    "known_admin",
    "page_to_json",
    "query_arg",
    "query_problem",
    "summary_to_json",
]

_log = Logger()

MAX_REASON = 1000
"""The longest reason an operator may give, in characters."""

_OUTCOMES = {
    "not_found": (404, "NOT_FOUND", "no such message"),
    "not_pending": (409, "NOT_PENDING", "the message has no recipient left to deliver"),
    "already_held": (409, "ALREADY_HELD", "the message is already on hold"),
    "not_held": (409, "NOT_HELD", "the message is not on hold"),
}


def admin_identity(request: Any) -> ClientIdentity | bytes:
    """The admin making ``request``, or the body of the 401/403 already set on it."""
    identity = client_identity(request)
    if isinstance(identity, bytes):
        return identity
    if identity.role != "admin":
        return write_error(
            request,
            403,
            "ADMIN_REQUIRED",
            "this endpoint needs an admin certificate (rail certs issue --admin)",
        )
    return identity


def known_admin(request: Any) -> ClientIdentity:
    """The admin making ``request``, inside a method of :class:`AdminJSONResource`, whose
    ``render`` has already refused everyone else."""
    identity = admin_identity(request)
    assert isinstance(identity, ClientIdentity)
    return identity


class AdminJSONResource(JSONResource):
    """A JSON leaf only an admin may use: anyone else is answered 401 or 403 before the
    method or the path is looked at, so a client learns nothing of what is here."""

    def render(self, request: Any) -> Any:
        identity = admin_identity(request)
        if isinstance(identity, bytes):
            return identity
        return super().render(request)


def summary_to_json(summary: MessageSummary) -> dict[str, Any]:
    return {
        "id": summary.id,
        "client": summary.client,
        "from": summary.sender,
        "received_at": rfc3339(summary.received_at),
        "size": summary.size,
        "status": summary.status,
        "recipients": list(summary.recipients),
        **meta_to_json(summary.meta),
    }


def page_to_json(page: Page) -> dict[str, Any]:
    return {
        "messages": [summary_to_json(m) for m in page.messages],
        "next_cursor": page.next_cursor,
    }


def _detail_to_json(detail: MessageDetail) -> dict[str, Any]:
    document = status_to_json(detail.status)
    document["client"] = detail.status.client
    document["held"] = detail.held
    if detail.held and document["status"] in ("queued", "deferred"):
        document["status"] = "held"
    for index, (recipient, mta) in enumerate(
        zip(document["recipients"], detail.remote_mta, strict=True)
    ):
        recipient["remote_mta"] = mta
        recipient["history"] = [
            {
                "at": rfc3339(a.at),
                "status": a.status,
                "reply": a.reply,
                "remote_mta": a.remote_mta,
            }
            for a in detail.history
            if a.idx == index
        ]
    fields = parse_header_section(detail.head).fields
    document["headers"] = [[name, value] for name, value in fields]
    document["actions"] = [
        {"at": rfc3339(a.at), "by": a.actor, "action": a.action, "reason": a.reason}
        for a in detail.actions
    ]
    return document


def query_arg(request: Any, name: str) -> str | None:
    values = request.args.get(name.encode("ascii"))
    if not values:
        return None
    text: str = values[-1].decode("utf-8", "replace")
    return text


def query_problem(request: Any, names: tuple[str, ...]) -> str | None:
    """Why the query string of ``request`` is unusable, or None: unknown parameters are
    refused so a typo is not silently a broader listing."""
    for key in request.args:
        name = key.decode("utf-8", "replace")
        if name not in names:
            return f"unknown query parameter {name!r}"
    status = query_arg(request, "status")
    if status is not None and status not in LISTED_STATUSES:
        return f"status: must be one of {', '.join(LISTED_STATUSES)}"
    cursor = query_arg(request, "cursor")
    if cursor is not None and not is_message_id(cursor):
        return "cursor: not a cursor this API returned"
    limit = query_arg(request, "limit")
    if limit is not None and (not limit.isdigit() or not 1 <= int(limit) <= MAX_PAGE):
        return f"limit: must be a number from 1 to {MAX_PAGE}"
    return None


def _failed(request: Any, failure: Failure, what: str, actor: str) -> bytes:
    if failure.check(StoreUnavailableError):
        _log.warn(
            "store unavailable for admin {what} by {client}: {reason}",
            what=what,
            client=actor,
            reason=str(failure.value),
        )
    else:
        _log.failure("admin {what} failed", failure, what=what, client=actor)
    request.setHeader(b"Retry-After", str(RETRY_AFTER).encode("ascii"))
    return write_error(request, 503, "QUEUE_UNAVAILABLE", "the queue is unavailable; retry later")


def answer_later(
    request: Any,
    work: Callable[[], Deferred[Any]],
    render: Callable[[Any], bytes],
    what: str,
    actor: str,
) -> Any:
    answer = maybeDeferred(work)
    answer.addCallbacks(render, lambda f: _failed(request, f, what, actor))
    return finish_later(request, answer)


def _body(request: Any) -> dict[str, Any] | str:
    """The JSON object of the request body ({} when empty), or why it is not one."""
    raw = request.content.read() if request.content is not None else b""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return "the body is not valid JSON"
    if not isinstance(value, dict):
        return "the body must be a JSON object"
    return value


def _reason(body: dict[str, Any]) -> str | bytes | None:
    reason = body.get("reason")
    if reason is None:
        return None
    if not isinstance(reason, str) or len(reason) > MAX_REASON or not reason.strip():
        return f"reason: a non-empty string of at most {MAX_REASON} characters".encode()
    if any(ord(c) < 32 for c in reason):
        return b"reason: control characters are not allowed"
    return reason.strip()


DomainsReport = Callable[[str | None], Deferred[dict[str, Any]]]
"""``rail doctor``'s report for one local domain or all (None), as JSON-able data; fails
with :class:`LookupError` for a domain that is not local."""


class _Domains(Resource):
    """``GET /api/v1/admin/domains[?domain=D]``: what ``rail doctor`` finds.

    A run takes seconds (DNS, connections, a policy fetch per domain), so requests that
    arrive while one for the same domain runs share its answer instead of starting more.
    """

    def __init__(self, report: DomainsReport) -> None:
        super().__init__()
        self._report = report
        self._waiting: dict[str | None, list[Deferred[Any]]] = {}

    def getChild(self, path: bytes, request: Any) -> Resource:
        return NotFound()

    def render(self, request: Any) -> Any:
        identity = admin_identity(request)
        if isinstance(identity, bytes):
            return identity
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"Allow", b"GET")
            return write_error(request, 405, "METHOD_NOT_ALLOWED", "GET only")
        problem = query_problem(request, ("domain",))
        if problem is not None:
            return write_error(request, 400, "INVALID_REQUEST", problem)
        domain = query_arg(request, "domain")
        answer: Deferred[Any] = Deferred()
        answer.addCallbacks(
            lambda report: write_json(request, 200, report),
            lambda failure: self._refused(request, failure, identity.name),
        )
        waiting = self._waiting.get(domain)
        if waiting is not None:
            waiting.append(answer)
        else:
            self._waiting[domain] = [answer]
            maybeDeferred(self._report, domain).addBoth(self._finished, domain)
        return finish_later(request, answer)

    def _finished(self, result: object, domain: str | None) -> None:
        for answer in self._waiting.pop(domain, []):
            if isinstance(result, Failure):
                answer.errback(result)
            else:
                answer.callback(result)

    def _refused(self, request: Any, failure: Failure, actor: str) -> bytes:
        if failure.check(LookupError):
            return write_error(request, 404, "NOT_A_LOCAL_DOMAIN", str(failure.value))
        _log.failure("admin domains report failed", failure, client=actor)
        return write_error(request, 503, "DOCTOR_UNAVAILABLE", "the checks could not run")


class AdminResource(Resource):
    """Mounted at ``/api/v1/admin``."""

    def __init__(
        self,
        queue: IAdminQueue,
        clock: IReactorTime,
        dsn: DSNBuilder | None,
        domains: DomainsReport | None = None,
    ) -> None:
        super().__init__()
        self.queue = queue
        self.clock = clock
        self.dsn = dsn
        self.putChild(b"messages", _Messages(self))
        self.putChild(b"retry", _RetryMany(self))
        if domains is not None:
            self.putChild(b"domains", _Domains(domains))

    def getChild(self, path: bytes, request: Any) -> Resource:
        return NotFound()

    def render(self, request: Any) -> bytes:
        identity = admin_identity(request)
        if isinstance(identity, bytes):
            return identity
        return NotFound().render(request)


class _Messages(Resource):
    def __init__(self, admin: AdminResource) -> None:
        super().__init__()
        self._admin = admin

    def getChild(self, path: bytes, request: Any) -> Resource:
        return _Message(self._admin, path.decode("ascii", "replace"))

    def render(self, request: Any) -> Any:
        identity = admin_identity(request)
        if isinstance(identity, bytes):
            return identity
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"Allow", b"GET")
            return write_error(request, 405, "METHOD_NOT_ALLOWED", "GET only")
        names = (
            "status",
            "client",
            "domain",
            "recipient",
            "older_than",
            "cursor",
            "limit",
            "tag",
            "request_id",
            "sender",
        )
        searched = metadata_args(request)
        if isinstance(searched, str):
            return write_error(request, 400, "INVALID_REQUEST", searched)
        metadata, metadata_names = searched
        problem = query_problem(request, names + metadata_names) or tag_problem(
            query_arg(request, "tag")
        )
        older = query_arg(request, "older_than")
        older_than = None
        if problem is None and older is not None:
            try:
                older_than = self._admin.clock.seconds() - parse_duration(older)
            except ValueError as e:
                problem = f"older_than: {e}"
        if problem is not None:
            return write_error(request, 400, "INVALID_REQUEST", problem)
        limit = query_arg(request, "limit")
        query = QueueQuery(
            status=query_arg(request, "status"),
            client=query_arg(request, "client"),
            domain=query_arg(request, "domain"),
            recipient=query_arg(request, "recipient"),
            older_than=older_than,
            cursor=query_arg(request, "cursor"),
            limit=int(limit) if limit is not None else 50,
            tag=query_arg(request, "tag"),
            request_id=query_arg(request, "request_id"),
            metadata=metadata,
            sender=query_arg(request, "sender"),
        )
        return answer_later(
            request,
            lambda: self._admin.queue.list_messages(query),
            lambda page: write_json(request, 200, page_to_json(page)),
            "list",
            identity.name,
        )


class _Message(Resource):
    def __init__(self, admin: AdminResource, message_id: str) -> None:
        super().__init__()
        self._admin = admin
        self._id = message_id

    def getChild(self, path: bytes, request: Any) -> Resource:
        action = path.decode("ascii", "replace")
        if action not in _ACTIONS:
            return NotFound()
        return _Action(self._admin, self._id, action)

    def render(self, request: Any) -> Any:
        identity = admin_identity(request)
        if isinstance(identity, bytes):
            return identity
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"Allow", b"GET")
            return write_error(request, 405, "METHOD_NOT_ALLOWED", "GET only")
        if not is_message_id(self._id):
            return write_error(request, 404, "NOT_FOUND", "no such message")

        def render(detail: MessageDetail | None) -> bytes:
            if detail is None:
                return write_error(request, 404, "NOT_FOUND", "no such message")
            return write_json(request, 200, _detail_to_json(detail))

        return answer_later(
            request, lambda: self._admin.queue.show_message(self._id), render, "show", identity.name
        )


_ACTIONS = ("retry", "hold", "release", "delete", "bounce")


class _Action(AdminJSONResource):
    def __init__(self, admin: AdminResource, message_id: str, action: str) -> None:
        super().__init__()
        self._admin = admin
        self._id = message_id
        self._action = action

    def render_POST(self, request: Any) -> Any:
        identity = known_admin(request)
        body = _body(request)
        if isinstance(body, str):
            return write_error(request, 400, "INVALID_REQUEST", body)
        reason = _reason(body)
        if isinstance(reason, bytes):
            return write_error(request, 400, "INVALID_REQUEST", reason.decode())
        if self._action == "delete" and reason is None:
            return write_error(request, 400, "INVALID_REQUEST", "reason: required to delete")
        if not is_message_id(self._id):
            return write_error(request, 404, "NOT_FOUND", "no such message")
        queue, now, actor, message_id = (
            self._admin.queue,
            self._admin.clock.seconds(),
            identity.name,
            self._id,
        )
        work: Callable[[], Deferred[Any]]
        if self._action == "retry":
            work = lambda: queue.retry(RetryTarget(message_id=message_id), now, actor)  # noqa: E731
        elif self._action == "hold":
            work = lambda: queue.hold(message_id, now, actor, reason)  # noqa: E731
        elif self._action == "release":
            work = lambda: queue.release(message_id, now, actor)  # noqa: E731
        elif self._action == "delete":
            work = lambda: queue.delete(message_id, now, actor, reason or "")  # noqa: E731
        else:
            work = lambda: queue.bounce(message_id, now, actor, reason, self._admin.dsn)  # noqa: E731

        def render(outcome: Any) -> bytes:
            _log.info(
                "admin {client} {action} {msg_id}: {outcome}",
                client=actor,
                action=self._action,
                msg_id=message_id,
                outcome=outcome,
                reason=reason,
            )
            if self._action == "retry":
                if outcome is None:
                    return write_error(request, 404, "NOT_FOUND", "no such message")
                return write_json(request, 200, {"id": message_id, "retried": outcome})
            if outcome in _OUTCOMES:
                status, code, message = _OUTCOMES[outcome]
                return write_error(request, status, code, message)
            return write_json(request, 200, {"id": message_id, "action": self._action})

        return answer_later(request, work, render, self._action, actor)


class _RetryMany(AdminJSONResource):
    def __init__(self, admin: AdminResource) -> None:
        super().__init__()
        self._admin = admin

    def render_POST(self, request: Any) -> Any:
        identity = known_admin(request)
        body = _body(request)
        if isinstance(body, str):
            return write_error(request, 400, "INVALID_REQUEST", body)
        domain = body.get("domain")
        every = body.get("all")
        if (domain is None) == (every is not True) or set(body) - {"domain", "all"}:
            return write_error(
                request, 400, "INVALID_REQUEST", 'send {"all": true} or {"domain": "..."}'
            )
        if domain is not None and (not isinstance(domain, str) or not domain.strip()):
            return write_error(request, 400, "INVALID_REQUEST", "domain: a domain name")
        target = RetryTarget(domain=domain)
        now = self._admin.clock.seconds()

        def render(count: int) -> bytes:
            _log.info(
                "admin {client} retry {target}: {count} recipient(s) due now",
                client=identity.name,
                target=domain or "all",
                count=count,
            )
            return write_json(request, 200, {"retried": count})

        return answer_later(
            request,
            lambda: self._admin.queue.retry(target, now, identity.name),
            render,
            "retry",
            identity.name,
        )
