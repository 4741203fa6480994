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

from importlib import resources
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.template import flattenString

from rail.console import layout, messagepages
from rail.console.actions import Actions
from rail.console.csrf import csrf_valid
from rail.console.reads import Reads
from rail.console.requests import (
    LOG_NAMESPACE,
    Admin,
    Answer,
    arg,
    connection_admin,
    not_found,
    post_form,
)
from rail.console.sources import ConsoleSources, Issuing
from rail.web.send import finish_later

__all__ = ["CONTENT_SECURITY_POLICY", "Console", "ConsoleSources", "Issuing"]

_log = Logger(namespace=LOG_NAMESPACE)

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


class Console(Resource):
    """Mounted at ``/console``; dispatches on the rest of the path to the pages
    (:mod:`rail.console.reads`) and the actions (:mod:`rail.console.actions`)."""

    isLeaf = True

    def __init__(self, sources: ConsoleSources) -> None:
        super().__init__()
        self._sources = sources
        self._reads = Reads(sources)
        self._actions = Actions(sources)

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
        admin = connection_admin(request)
        if isinstance(admin, str):
            return self._write(request, succeed(Answer(403, layout.forbidden_page(admin))))
        if request.method == b"POST":
            answer = self._post(request, path, admin)
        elif request.method in (b"GET", b"HEAD"):
            answer = self._get(request, path, admin)
        else:
            request.setHeader(b"Allow", b"GET, POST")
            answer = succeed(Answer(405, layout.notice_page("Method not allowed", "GET or POST.")))
        return self._write(request, answer)

    def _write(self, request: Any, answer: Deferred[Answer]) -> Any:
        def render(result: Answer) -> Deferred[bytes] | bytes:
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

    def _get(self, request: Any, path: list[str], admin: Admin) -> Deferred[Answer]:
        args = request.args
        reads, actions = self._reads, self._actions
        if path == [""]:
            return reads.overview()
        if path == ["messages"]:
            return reads.messages(args)
        if len(path) == 2 and path[0] == "messages":
            return reads.message(path[1], args)
        if len(path) == 3 and path[0] == "messages" and path[2] in messagepages.ACTIONS:
            return actions.confirm_act(path[1], path[2], admin)
        if path == ["inbound"]:
            return reads.inbound(args)
        if len(path) == 3 and path[0] == "inbound" and path[2] == "retry":
            return actions.confirm_retry_inbound(path[1], admin)
        if path == ["clients"]:
            return reads.clients(args, admin)
        if len(path) == 3 and path[0] == "certificates" and path[2] == "revoke":
            return actions.confirm_revoke(path[1], admin)
        if path == ["suppressions", "remove"]:
            return actions.confirm_remove(args, admin)
        if path == ["domains"]:
            return reads.domains(admin, False, arg(args, "rotated"))
        if len(path) == 3 and path[0] == "dkim" and path[2] == "rotate":
            return actions.confirm_rotate(path[1], admin)
        return not_found()

    # POST

    def _post(self, request: Any, path: list[str], admin: Admin) -> Deferred[Answer]:
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
            return not_found()
        form = post_form(request)
        token = arg(form, "csrf") if form is not None else None
        if form is None or not csrf_valid(self._sources.secret, admin.fingerprint, target, token):
            _log.warn(
                "console refused {target} by {admin}: missing or wrong CSRF token",
                target=target,
                admin=admin.name,
            )
            return succeed(
                Answer(
                    403,
                    layout.notice_page(
                        "Refused",
                        "This form was not one this console gave you (no valid token), so"
                        " nothing was done. Go back, reload the page and try again.",
                    ),
                )
            )
        actions = self._actions
        if is_removal:
            return actions.remove(form, admin)
        if is_inbound:
            return actions.retry_inbound(path[1], admin)
        if is_check:
            return self._reads.domains(admin, True)
        if is_revoke:
            return actions.revoke(path[1], admin)
        if is_issue:
            return actions.issue(form, admin)
        if is_download:
            return actions.download(form)
        if is_rotate:
            return actions.rotate(path[1], admin)
        return actions.act(path[1], path[2], form, admin)
