"""``/console/``: the operators' web console on the HTTPS listener.

Only a connection whose client certificate is an admin certificate gets a page; any
other request is answered 403 with a page saying how to get one. Pages are rendered from
the same store reads and admin queue operations as the admin API (read thread, writer
thread); the registry, the records and the disk are read in a thread. A POST (message
actions, removing a suppressed address, retrying an inbound webhook, running the
doctor's checks, revoking or issuing a certificate, saving an issued one, rotating DKIM
keys) needs the form's CSRF token (:mod:`rail.console.csrf`), checked before anything is
done; an action answers 303 to the page that shows the result, except issuing, whose
answer is the one page that shows the new private key (:mod:`rail.console.issuing`).
Every answer forbids inline scripts and styles, framing and outside resources
(``Content-Security-Policy``: scripts and styles only from the files under
``/console/static/``), is ``no-store`` and ``nosniff``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.template import Tag, flattenString

from rail.config.clients import ClientPolicies
from rail.console import (
    clientpages,
    domainpages,
    inboundpages,
    issuing,
    layout,
    messagepages,
    overview,
)
from rail.console.csrf import csrf_token, csrf_valid
from rail.console.issuing import Issued, IssueForm
from rail.delivery.stats import DeliveryStats
from rail.dkim.names import a_label
from rail.dkim.rotation import Rotated
from rail.mail.meta import MAX_KEY
from rail.pki.clientevents import ClientEvents
from rail.pki.registry import CertificateRecord, RegistryError
from rail.policy.identity import identity_from_certificate
from rail.store.adminmodel import LISTED_STATUSES, QueueQuery, RetryTarget
from rail.store.deliveries import DSNBuilder
from rail.store.ids import is_message_id
from rail.store.suppressionmodel import SuppressionQuery
from rail.web.admin import MAX_REASON, DomainsReport
from rail.web.identity import peer_certificate
from rail.web.metaquery import tag_problem
from rail.web.send import finish_later

__all__ = ["CONTENT_SECURITY_POLICY", "Console", "ConsoleSources"]

_log = Logger()

CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    b" form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""Scripts only from the console's own files (no inline script, no ``eval``), styles
likewise, nothing from elsewhere."""

_STATIC = {
    name: (kind, resources.files("rail.console").joinpath(f"static/{name}").read_bytes())
    for name, kind in (
        ("console.css", b"text/css; charset=utf-8"),
        ("console.js", b"text/javascript; charset=utf-8"),
    )
}
"""The files under ``/console/static/``, read once at import."""

_META_KEY = re.compile(rf"[A-Za-z0-9_.\-]{{1,{MAX_KEY}}}")
"""A metadata key, as :mod:`rail.mail.meta` allows them."""

_SERIAL = re.compile(r"[0-9a-f]{1,40}")
"""A certificate serial as the pages write it (lower-case hex)."""

_MAX_FIELD = 320
"""The longest search value accepted (an address's maximum length)."""

_DONE = {
    ("retry", "done"): "Retried: the pending recipients are due now.",
    ("retry", "none"): "Nothing to retry: no pending recipient is waiting.",
    ("hold", "done"): "Held: no delivery until released.",
    ("release", "done"): "Released: the pending recipients are due now.",
    ("delete", "done"): "Deleted: the pending recipients will not be delivered.",
    ("bounce", "done"): "Bounced: the sender gets a DSN.",
    ("any", "not_pending"): "Nothing was done: no recipient is pending.",
    ("any", "already_held"): "Nothing was done: the message is already on hold.",
    ("any", "not_held"): "Nothing was done: the message is not on hold.",
}
"""What an action's outcome (``?done=ACTION&outcome=CODE``) says; only these texts are
shown, so a link cannot put words on the page."""


@attrs.frozen
class ConsoleSources:
    """What the console reads and acts on. ``store`` is the SQLite store (IAdminQueue,
    ISuppressionList, ``recipient_counts`` and ``message_events``); the callables return
    Deferreds and do their file work in a thread: ``certificates`` the registry's
    records, ``records`` ``rail dns records``' text, ``disk_free`` the bytes free under
    the queue. ``secret`` keys the CSRF tokens (random, made at start)."""

    store: Any
    """IAdminQueue and ISuppressionList, with ``recipient_counts``, ``message_events``,
    ``deferring_domains``, ``webhook_backlog``, ``recent_inbound`` and ``retry_inbound``
    (:class:`rail.store.queuestore.QueueStore`)."""
    clock: IReactorTime
    secret: bytes
    stats: DeliveryStats | None = None
    certificates: Callable[[], Deferred[list[CertificateRecord]]] | None = None
    records: Callable[[], Deferred[str]] | None = None
    domains: DomainsReport | None = None
    disk_free: Callable[[], Deferred[int]] | None = None
    dsn: DSNBuilder | None = None
    revoke: Callable[[str], Deferred[list[CertificateRecord]]] | None = None
    """Revoke the certificate with this hex serial (registry and CRL, in a thread)."""
    policies: Callable[[], ClientPolicies] | None = None
    """The per-client limits and sandbox flags in force (followed across SIGHUP)."""
    server_certificate: Callable[[], x509.Certificate] | None = None
    """The HTTPS listener's certificate now in use (no I/O)."""
    client_events: Callable[[], Deferred[list[ClientEvents]]] | None = None
    """Every client's event subscription (registry, read in a thread)."""
    dkim: Callable[[], Deferred[list[domainpages.DKIMSelectors]]] | None = None
    """The DKIM selectors each local domain signs with now (key files read in a thread)."""
    issuing: Issuing | None = None
    """Issuing certificates from the Clients page."""
    rotate_dkim: Callable[[str], Deferred[Rotated | str]] | None = None
    """Rotate a domain's DKIM keys as ``rail dkim rotate`` does and make the running
    server sign with them (in a thread); the rotation, or why not (the CLI's message)."""


@attrs.frozen
class Issuing:
    """What issuing needs: ``check`` gives a form's problems (``rail certs issue``'s
    messages; no I/O), ``issue`` issues in a thread (the certificate, or the problems
    that stopped it)."""

    check: Callable[[IssueForm], list[str]]
    issue: Callable[[IssueForm], Deferred[Issued | list[str]]]
    key_types: tuple[str, ...]
    default_key_type: str
    default_days: int


@attrs.frozen
class _Admin:
    name: str
    fingerprint: str


@attrs.frozen
class _Answer:
    """A page to write (``status``, ``page``), a redirect (``location``) or a file to
    save (``download``: its name and bytes)."""

    status: int = 200
    page: Tag | None = None
    location: str | None = None
    download: tuple[str, bytes] | None = attrs.field(default=None, repr=False)


def _admin(request: Any) -> _Admin | str:
    """The admin of the connection, or why the request is refused (read once per
    connection: kept-alive requests reuse it)."""
    channel = request.channel
    known = getattr(channel, "_rail_console_admin", None)
    if known is not None:
        result: _Admin | str = known
        return result
    certificate = peer_certificate(request)
    if certificate is None:
        answer: _Admin | str = "This request came without a client certificate."
    else:
        try:
            identity = identity_from_certificate(certificate)
        except ValueError:
            identity = None
        if identity is None or identity.role != "admin":
            answer = "This certificate is an application's, not an operator's admin certificate."
        else:
            answer = _Admin(identity.name, certificate.fingerprint(hashes.SHA256()).hex())
    if channel is not None:
        channel._rail_console_admin = answer
    return answer


def _arg(args: dict[bytes, list[bytes]], name: str) -> str:
    values = args.get(name.encode("ascii"))
    return values[-1].decode("utf-8", "replace").strip() if values else ""


def _form(request: Any) -> dict[bytes, list[bytes]] | None:
    """The urlencoded body of a POST, or None if it is not one."""
    kind = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if kind != b"application/x-www-form-urlencoded":
        return None
    raw = request.content.read() if request.content is not None else b""
    try:
        parsed = parse_qs(raw, keep_blank_values=True, strict_parsing=False, max_num_fields=20)
    except ValueError:
        return None
    return parsed


class Console(Resource):
    """Mounted at ``/console``; dispatches on the rest of the path."""

    isLeaf = True

    def __init__(self, sources: ConsoleSources) -> None:
        super().__init__()
        self._sources = sources
        self._checking: list[Deferred[Any]] = []

    def render(self, request: Any) -> Any:
        request.setHeader(b"Content-Security-Policy", CONTENT_SECURITY_POLICY)
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Referrer-Policy", b"no-referrer")
        request.setHeader(b"Cache-Control", b"no-store")
        path = [segment.decode("utf-8", "replace") for segment in request.postpath]
        if len(path) == 2 and path[0] == "static" and path[1] in _STATIC:
            kind, body = _STATIC[path[1]]
            request.setHeader(b"Content-Type", kind)
            return body
        if not path:
            request.setResponseCode(301)
            request.setHeader(b"Location", b"/console/")
            return b""
        admin = _admin(request)
        if isinstance(admin, str):
            return self._write(request, succeed(_Answer(403, layout.forbidden_page(admin))))
        if request.method == b"POST":
            answer = self._post(request, path, admin)
        elif request.method in (b"GET", b"HEAD"):
            answer = self._get(request, path, admin)
        else:
            request.setHeader(b"Allow", b"GET, POST")
            answer = succeed(_Answer(405, layout.notice_page("Method not allowed", "GET or POST.")))
        return self._write(request, answer)

    def _write(self, request: Any, answer: Deferred[_Answer]) -> Any:
        def render(result: _Answer) -> Deferred[bytes] | bytes:
            if result.location is not None:
                request.setResponseCode(303)
                request.setHeader(b"Location", result.location.encode("ascii"))
                return b""
            if result.download is not None:
                name, data = result.download
                request.setHeader(b"Content-Type", b"application/x-pem-file")
                disposition = f'attachment; filename="{name}"'
                request.setHeader(b"Content-Disposition", disposition.encode("ascii"))
                return data
            request.setResponseCode(result.status)
            request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
            assert result.page is not None
            body = flattenString(None, result.page)
            return body.addCallback(lambda html: b"<!DOCTYPE html>\n" + html)

        def failed(failure: Failure) -> Deferred[bytes]:
            _log.failure("console page failed", failure)
            request.setResponseCode(503)
            request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
            request.setHeader(b"Retry-After", b"5")
            page = layout.notice_page(
                "Unavailable", "The queue could not answer just now; try again in a moment."
            )
            return flattenString(None, page).addCallback(lambda html: b"<!DOCTYPE html>\n" + html)

        body: Deferred[Any] = answer.addCallback(render).addErrback(failed)
        return finish_later(request, body)

    # GET

    def _get(self, request: Any, path: list[str], admin: _Admin) -> Deferred[_Answer]:
        args = request.args
        if path == [""]:
            return self._overview()
        if path == ["messages"]:
            return self._messages(args)
        if len(path) == 2 and path[0] == "messages":
            return self._message(path[1], args)
        if len(path) == 3 and path[0] == "messages" and path[2] in messagepages.ACTIONS:
            if not is_message_id(path[1]):
                return _not_found()
            target = f"/console/messages/{path[1]}/{path[2]}"
            token = csrf_token(self._sources.secret, admin.fingerprint, target)
            return succeed(_Answer(page=messagepages.confirm_page(path[1], path[2], token)))
        if path == ["inbound"]:
            return self._inbound(args)
        if len(path) == 3 and path[0] == "inbound" and path[2] == "retry":
            if not is_message_id(path[1]):
                return _not_found()
            target = f"/console/inbound/{path[1]}/retry"
            token = csrf_token(self._sources.secret, admin.fingerprint, target)
            return succeed(_Answer(page=inboundpages.inbound_retry_page(path[1], token)))
        if path == ["clients"]:
            return self._clients(args, None, admin)
        if len(path) == 3 and path[0] == "certificates" and path[2] == "revoke":
            if not _SERIAL.fullmatch(path[1]) or self._sources.revoke is None:
                return _not_found()
            target = f"/console/certificates/{path[1]}/revoke"
            token = csrf_token(self._sources.secret, admin.fingerprint, target)
            return succeed(_Answer(page=clientpages.revoke_page(path[1], token)))
        if path == ["suppressions", "remove"]:
            client, address = _arg(args, "client"), _arg(args, "address")
            if not client or not address:
                return _not_found()
            token = csrf_token(
                self._sources.secret, admin.fingerprint, "/console/suppressions/remove"
            )
            return succeed(_Answer(page=clientpages.remove_page(client, address, token)))
        if path == ["domains"]:
            return self._domains(admin, False, _arg(args, "rotated"))
        if len(path) == 3 and path[0] == "dkim" and path[2] == "rotate":
            domain = path[1]
            if a_label(domain) != domain or self._sources.rotate_dkim is None:
                return _not_found()
            target = f"/console/dkim/{domain}/rotate"
            token = csrf_token(self._sources.secret, admin.fingerprint, target)
            return succeed(_Answer(page=issuing.rotate_confirm_page(domain, token)))
        return _not_found()

    def _overview(self) -> Deferred[_Answer]:
        sources = self._sources
        now = sources.clock.seconds()
        counts = _or_none(sources.store.recipient_counts())
        disk = _or_none(sources.disk_free()) if sources.disk_free is not None else succeed(None)
        certs = (
            _or_none(sources.certificates()) if sources.certificates is not None else succeed(None)
        )
        deferring = _or_none(sources.store.deferring_domains())
        backlog = _or_none(sources.store.webhook_backlog())
        refreshed: list[Deferred[Any]] = []
        if sources.stats is not None:
            refreshed = [_or_none(maybeDeferred(r)) for r in sources.stats.refreshers]

        def render(found: list[Any]) -> _Answer:
            counts_found, disk_found, certs_found, deferring_found, backlog_found = found[:5]
            stats = sources.stats
            snapshot = sent = per_minute = accepted = None
            if stats is not None:
                snapshot = stats.snapshot(now, counts_found or {})
                sent = stats.recent_sent(now)
                per_minute = stats.sent_per_minute(now)
                accepted = stats.accepted_per_minute(now)
            server = sources.server_certificate() if sources.server_certificate else None
            if stats is not None and snapshot is not None:
                snapshot = {**snapshot, "quarantined": _quarantined(stats)}
            page = overview.overview_page(
                now,
                counts_found,
                snapshot,
                sent or [],
                disk_found,
                certs_found,
                deferring_found,
                per_minute or [],
                server,
                backlog_found,
                accepted or [],
            )
            return _Answer(page=page)

        reads = [counts, disk, certs, deferring, backlog, *refreshed]
        return gatherResults(reads).addCallback(render)

    def _messages(self, args: dict[bytes, list[bytes]]) -> Deferred[_Answer]:
        """The search form and, always, a page of results: the newest messages when no
        field is filled in (a listing is bounded whatever the queue holds)."""
        values = {name: _arg(args, name) for name in messagepages.SEARCH_FIELDS}
        cursor = _arg(args, "cursor") or None
        problem = None
        after = before = None
        metadata: tuple[tuple[str, str], ...] = ()
        if any(len(v) > _MAX_FIELD for v in values.values()):
            problem = f"Each field is at most {_MAX_FIELD} characters."
        elif values["status"] and values["status"] not in LISTED_STATUSES:
            problem = "Status: pick one from the list."
        elif cursor is not None and not is_message_id(cursor):
            problem = "That link to older messages is not valid."
        elif values["tag"]:
            problem = tag_problem(values["tag"])
        if problem is None:
            after, problem = _utc(values["received_after"], "Received after")
        if problem is None:
            before, problem = _utc(values["received_before"], "Received before")
        if problem is None and values["metadata"]:
            key, equals, value = values["metadata"].partition("=")
            if not equals or not _META_KEY.fullmatch(key.strip()):
                problem = (
                    f"Metadata: key=value, the key 1 to {MAX_KEY} characters of A-Z a-z 0-9 _ . -"
                )
            else:
                metadata = ((key.strip(), value.strip()),)
        if problem is not None:
            return succeed(_Answer(400, messagepages.messages_page(values, None, problem)))
        query = QueueQuery(
            status=values["status"] or None,
            client=values["client"] or None,
            recipient=values["recipient"] or None,
            sender=values["sender"] or None,
            request_id=values["request_id"] or None,
            tag=values["tag"] or None,
            metadata=metadata,
            newer_than=after,
            older_than=before,
            cursor=cursor,
            limit=50,
        )
        return self._sources.store.list_messages(query).addCallback(
            lambda found: _Answer(page=messagepages.messages_page(values, found, None))
        )

    def _message(self, message_id: str, args: dict[bytes, list[bytes]]) -> Deferred[_Answer]:
        if not is_message_id(message_id):
            return _not_found()
        store = self._sources.store
        action, outcome = _arg(args, "done"), _arg(args, "outcome")
        done = _DONE.get((action, outcome)) or _DONE.get(("any", outcome))

        def render(found: list[Any]) -> _Answer:
            detail, events = found
            if detail is None:
                return _Answer(404, layout.notice_page("Not found", "No such message."))
            return _Answer(page=messagepages.message_page(detail, events, done))

        return gatherResults(
            [store.show_message(message_id), store.message_events(message_id)]
        ).addCallback(render)

    def _inbound(self, args: dict[bytes, list[bytes]]) -> Deferred[_Answer]:
        before = _arg(args, "before") or None
        if before is not None and not is_message_id(before):
            return _not_found()
        retried = _arg(args, "retried")
        done = None
        if retried.isdigit():
            done = (
                f"Retried: {retried} webhook job(s) due now."
                if retried != "0"
                else "Nothing to retry: no webhook job is pending."
            )
        return self._sources.store.recent_inbound(before).addCallback(
            lambda found: _Answer(page=inboundpages.inbound_page(found, done))
        )

    def _clients(
        self, args: dict[bytes, list[bytes]], done: str | None, admin: _Admin
    ) -> Deferred[_Answer]:
        sources = self._sources
        now = sources.clock.seconds()
        client, q = _arg(args, "client")[:_MAX_FIELD], _arg(args, "q")[:_MAX_FIELD]
        revoked = _arg(args, "revoked")
        if _SERIAL.fullmatch(revoked):
            done = f"Revoked certificate {revoked}: the server refuses it within a second."
        elif _arg(args, "removed") == "1":
            done = "Removed from the suppression list."
        elif _arg(args, "removed") == "0":
            done = "That address was not on the list."
        certs = (
            _or_none(sources.certificates()) if sources.certificates is not None else succeed(None)
        )
        events = (
            _or_none(sources.client_events())
            if sources.client_events is not None
            else succeed(None)
        )
        listed: Deferred[Any] = succeed(None)
        if client:
            listed = sources.store.list_suppressions(
                SuppressionQuery(client=client, limit=100, q=q.lower() or None)
            )

        issue = None
        if sources.issuing is not None:
            issue = issuing.issue_form(
                csrf_token(sources.secret, admin.fingerprint, "/console/certificates/issue"),
                IssueForm(),
                sources.issuing.key_types,
                sources.issuing.default_key_type,
            )

        def render(found: list[Any]) -> _Answer:
            records, listing, subscribed = found
            policies = sources.policies() if sources.policies is not None else None
            page = clientpages.clients_page(
                now,
                records,
                client,
                q,
                listing,
                done,
                sources.revoke is not None,
                policies,
                {e.name: e for e in subscribed} if subscribed is not None else None,
                issue,
            )
            return _Answer(page=page)

        return gatherResults([certs, listed, events]).addCallback(render)

    def _domains(self, admin: _Admin, check: bool, rotated: str = "") -> Deferred[_Answer]:
        """The records, and with ``check`` the doctor's verdicts (a POST: the checks cost
        seconds of DNS queries and connections, so a link from elsewhere cannot start
        them); after a rotation of ``rotated``, its new selectors and records."""
        sources = self._sources
        records: Deferred[Any] = succeed((None, "Records are not available here."))
        if sources.records is not None:
            records = sources.records().addCallbacks(
                lambda text: (text, None), lambda failure: (None, failure.getErrorMessage())
            )
        report: Deferred[Any] = succeed(None)
        if check and sources.domains is not None:
            report = self._doctor()
        token = csrf_token(sources.secret, admin.fingerprint, "/console/domains/check")
        dkim = _or_none(sources.dkim()) if sources.dkim is not None else succeed(None)

        def render(found: list[Any]) -> _Answer:
            (text, problem), verdicts, selectors = found
            available = sources.domains is not None
            notice = None
            for each in selectors or ():
                if rotated and each.domain == rotated:
                    notice = issuing.rotated_notice(each)
            page = domainpages.domains_page(
                text,
                verdicts,
                problem,
                token,
                available,
                selectors,
                sources.rotate_dkim is not None,
                notice,
            )
            return _Answer(page=page)

        return gatherResults([records, report, dkim]).addCallback(render)

    def _doctor(self) -> Deferred[Any]:
        """The doctor's report; requests made while a run is under way share it."""
        waiter: Deferred[Any] = Deferred()
        self._checking.append(waiter)
        if len(self._checking) == 1:
            assert self._sources.domains is not None

            def finished(result: object) -> None:
                waiting, self._checking = self._checking, []
                for each in waiting:
                    if isinstance(result, Failure):
                        each.callback(
                            {"counts": {}, "checks": [], "error": result.getErrorMessage()}
                        )
                    else:
                        each.callback(result)

            maybeDeferred(self._sources.domains, None).addBoth(finished)
        return waiter

    # POST

    def _post(self, request: Any, path: list[str], admin: _Admin) -> Deferred[_Answer]:
        target = "/" + "/".join(["console", *path])
        is_action = len(path) == 3 and path[0] == "messages" and path[2] in messagepages.ACTIONS
        is_removal = path == ["suppressions", "remove"]
        is_inbound = len(path) == 3 and path[0] == "inbound" and path[2] == "retry"
        is_check = path == ["domains", "check"]
        is_revoke = len(path) == 3 and path[0] == "certificates" and path[2] == "revoke"
        is_issue = path == ["certificates", "issue"]
        is_download = path == ["certificates", "download"]
        is_rotate = len(path) == 3 and path[0] == "dkim" and path[2] == "rotate"
        known = (is_action, is_removal, is_inbound, is_check, is_revoke, is_issue, is_download)
        if not (any(known) or is_rotate):
            return _not_found()
        form = _form(request)
        token = _arg(form, "csrf") if form is not None else None
        if form is None or not csrf_valid(self._sources.secret, admin.fingerprint, target, token):
            _log.warn(
                "console refused {target} by {admin}: missing or wrong CSRF token",
                target=target,
                admin=admin.name,
            )
            return succeed(
                _Answer(
                    403,
                    layout.notice_page(
                        "Refused",
                        "This form was not one this console gave you (no valid token), so"
                        " nothing was done. Go back, reload the page and try again.",
                    ),
                )
            )
        if is_removal:
            return self._remove(form, admin)
        if is_inbound:
            return self._retry_inbound(path[1], admin)
        if is_check:
            return self._domains(admin, True)
        if is_revoke:
            return self._revoke(path[1], admin)
        if is_issue:
            return self._issue(form, admin)
        if is_download:
            return self._download(form)
        if is_rotate:
            return self._rotate(path[1], admin)
        return self._act(path[1], path[2], form, admin)

    def _act(
        self, message_id: str, action: str, form: dict[bytes, list[bytes]], admin: _Admin
    ) -> Deferred[_Answer]:
        if not is_message_id(message_id):
            return _not_found()
        reason = _arg(form, "reason") or None
        problem = None
        if reason is not None and (len(reason) > MAX_REASON or any(ord(c) < 32 for c in reason)):
            problem = f"The reason is at most {MAX_REASON} characters, on one line."
        elif action == "delete" and reason is None:
            problem = "Deleting needs a reason."
        if problem is not None:
            token = csrf_token(
                self._sources.secret,
                admin.fingerprint,
                f"/console/messages/{message_id}/{action}",
            )
            return succeed(
                _Answer(400, messagepages.confirm_page(message_id, action, token, problem))
            )
        sources = self._sources
        queue, now, actor = sources.store, sources.clock.seconds(), admin.name
        work: Deferred[Any]
        if action == "retry":
            work = queue.retry(RetryTarget(message_id=message_id), now, actor)
        elif action == "hold":
            work = queue.hold(message_id, now, actor, reason)
        elif action == "release":
            work = queue.release(message_id, now, actor)
        elif action == "delete":
            work = queue.delete(message_id, now, actor, reason or "")
        else:
            work = queue.bounce(message_id, now, actor, reason, sources.dsn)

        def answer(outcome: Any) -> _Answer:
            _log.info(
                "admin {client} {action} {msg_id} (console): {outcome}",
                client=actor,
                action=action,
                msg_id=message_id,
                outcome=outcome,
                reason=reason,
            )
            if outcome is None or outcome == "not_found":
                return _Answer(404, layout.notice_page("Not found", "No such message."))
            if action == "retry":
                code = "done" if outcome else "none"
            else:
                code = str(outcome)
            query = urlencode({"done": action, "outcome": code})
            return _Answer(location=f"/console/messages/{message_id}?{query}")

        return work.addCallback(answer)

    def _remove(self, form: dict[bytes, list[bytes]], admin: _Admin) -> Deferred[_Answer]:
        client, address = _arg(form, "client"), _arg(form, "address")
        if not client or not address or max(len(client), len(address)) > _MAX_FIELD:
            return succeed(
                _Answer(400, layout.notice_page("Refused", "A client and an address are needed."))
            )

        def answer(removed: bool) -> _Answer:
            _log.info(
                "admin {admin} removed {address} from the suppression list of {client}"
                " (console): {removed}",
                admin=admin.name,
                address=address,
                client=client,
                removed=removed,
            )
            query = urlencode({"client": client, "removed": "1" if removed else "0"})
            return _Answer(location=f"/console/clients?{query}#suppressions")

        return self._sources.store.remove_suppression(client, address).addCallback(answer)

    def _revoke(self, serial: str, admin: _Admin) -> Deferred[_Answer]:
        revoke = self._sources.revoke
        if not _SERIAL.fullmatch(serial) or revoke is None:
            return _not_found()

        def done(records: list[CertificateRecord]) -> _Answer:
            _log.info(
                "admin {admin} revoked certificate {serial} ({names}) (console)",
                admin=admin.name,
                serial=serial,
                names=", ".join(r.name for r in records),
            )
            return _Answer(location=f"/console/clients?{urlencode({'revoked': serial})}")

        def refused(failure: Failure) -> _Answer:
            failure.trap(RegistryError)
            text = str(failure.value)
            return _Answer(409, layout.notice_page("Not revoked", text, "/console/clients"))

        return revoke(serial).addCallbacks(done, refused)

    def _issue(self, form: dict[bytes, list[bytes]], admin: _Admin) -> Deferred[_Answer]:
        """A first POST checks the fields and asks for confirmation; a confirmed one
        issues (in a thread) and shows the certificate and key once."""
        sources = self._sources
        settings = sources.issuing
        if settings is None:
            return _not_found()
        values = issuing.read_issue_form(form)
        values = attrs.evolve(values, key_type=values.key_type or settings.default_key_type)
        token = csrf_token(sources.secret, admin.fingerprint, "/console/certificates/issue")

        def refused(problems: list[str]) -> _Answer:
            page = issuing.issue_page(
                token, values, settings.key_types, settings.default_key_type, problems
            )
            return _Answer(400, page)

        problems = settings.check(values)
        if problems:
            return succeed(refused(problems))
        if _arg(form, "confirm") != "1":
            days = int(values.days[:9]) if values.days else settings.default_days
            return succeed(_Answer(page=issuing.issue_confirm_page(token, values, days)))

        def done(outcome: Issued | list[str]) -> _Answer:
            if isinstance(outcome, list):
                return refused(outcome)
            record = outcome.pem.record
            _log.info(
                "admin {admin} issued certificate {serial} for {name} ({role}) (console)",
                admin=admin.name,
                serial=format(record.serial, "x"),
                name=record.name,
                role=record.role,
            )
            download = csrf_token(
                sources.secret, admin.fingerprint, "/console/certificates/download"
            )
            return _Answer(page=issuing.issued_page(outcome, download))

        return settings.issue(values).addCallback(done)

    def _download(self, form: dict[bytes, list[bytes]]) -> Deferred[_Answer]:
        """A certificate or key from the issued page, sent back as a file to save."""
        name, kind = _arg(form, "name"), _arg(form, "kind")
        values = form.get(b"pem")
        pem = values[-1].decode("ascii", "replace") if values else ""
        problem = issuing.download_problem(name, kind, pem)
        if problem is not None:
            return succeed(_Answer(400, layout.notice_page("Refused", problem, "/console/clients")))
        return succeed(_Answer(download=(f"{name}.{kind}", pem.encode("ascii"))))

    def _rotate(self, domain: str, admin: _Admin) -> Deferred[_Answer]:
        rotate = self._sources.rotate_dkim
        if rotate is None or a_label(domain) != domain:
            return _not_found()

        def done(outcome: Rotated | str) -> _Answer:
            if isinstance(outcome, str):
                return _Answer(409, layout.notice_page("Not rotated", outcome, "/console/domains"))
            generation = outcome.generation
            _log.info(
                "admin {admin} rotated the DKIM keys of {domain} (console): selectors"
                " {ed25519} and {rsa}",
                admin=admin.name,
                domain=outcome.domain,
                ed25519=generation.ed25519_selector,
                rsa=generation.rsa_selector,
            )
            query = urlencode({"rotated": outcome.domain})
            return _Answer(location=f"/console/domains?{query}#main")

        return rotate(domain).addCallback(done)

    def _retry_inbound(self, message_id: str, admin: _Admin) -> Deferred[_Answer]:
        if not is_message_id(message_id):
            return _not_found()
        now = self._sources.clock.seconds()

        def answer(count: int) -> _Answer:
            _log.info(
                "admin {admin} retried the webhooks of inbound {msg_id} (console):"
                " {count} job(s) due now",
                admin=admin.name,
                msg_id=message_id,
                count=count,
            )
            return _Answer(location=f"/console/inbound?retried={count}")

        return self._sources.store.retry_inbound(message_id, now).addCallback(answer)


def _quarantined(stats: DeliveryStats) -> dict[str, int]:
    """Messages quarantined since start per queue, from ``rail_quarantined_total``."""
    found: dict[str, int] = {}
    for metric in stats.registry.collect():
        if metric.name != "rail_quarantined":
            continue
        for sample in metric.samples:
            if sample.name == "rail_quarantined_total":
                queue = sample.labels.get("queue", "?")
                found[queue] = found.get(queue, 0) + int(sample.value)
    return found


def _utc(text: str, label: str) -> tuple[float | None, str | None]:
    """A form's ``YYYY-MM-DDTHH:MM[:SS]`` (UTC) as seconds since the epoch, or why not."""
    if not text:
        return None, None
    for form in ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            when = datetime.strptime(text, form).replace(tzinfo=UTC)
        except ValueError:
            continue
        return when.timestamp(), None
    return None, f"{label}: a date and time such as 2026-12-04T15:30 (UTC)."


def _not_found() -> Deferred[_Answer]:
    return succeed(_Answer(404, layout.notice_page("Not found", "No such page.", "/console/")))


def _or_none(work: Deferred[Any]) -> Deferred[Any]:
    """``work``'s result, or None when it failed (logged): one figure that cannot be
    read leaves the rest of the overview standing."""

    def failed(failure: Failure) -> None:
        _log.failure("console read failed", failure)
        return None

    return work.addErrback(failed)
