"""What every console request goes through, whichever page or action it is for: who the
admin is, the query's and form's values, and the answer a handler gives back for
:class:`rail.console.resource.Console` to write (so handlers never touch the request)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

import attrs
from cryptography.hazmat.primitives import hashes
from twisted.internet.defer import Deferred, succeed
from twisted.web.template import Tag

from rail.console import layout
from rail.policy.identity import identity_from_certificate
from rail.web.identity import peer_certificate

__all__ = [
    "LOG_NAMESPACE",
    "MAX_FIELD",
    "SERIAL",
    "Admin",
    "Answer",
    "arg",
    "connection_admin",
    "not_found",
    "post_form",
]

LOG_NAMESPACE = "rail.console.resource"
"""The namespace of every console log line: the one they had when a single module held
the console, which log filters may match."""

SERIAL = re.compile(r"[0-9a-f]{1,40}")
"""A certificate serial as the pages write it (lower-case hex)."""

MAX_FIELD = 320
"""The longest search value accepted (an address's maximum length)."""


@attrs.frozen
class Admin:
    """The operator behind a request: ``name`` for the logs, ``fingerprint`` to tie the
    CSRF tokens to the certificate."""

    name: str
    fingerprint: str


@attrs.frozen
class Answer:
    """A page to write (``status``, ``page``), a redirect (``location``) or a file to
    save (``download``: its name and bytes)."""

    status: int = 200
    page: Tag | None = None
    location: str | None = None
    download: tuple[str, bytes] | None = attrs.field(default=None, repr=False)


def connection_admin(request: Any) -> Admin | str:
    """The admin of the connection, or why the request is refused (read once per
    connection: kept-alive requests reuse it)."""
    channel = request.channel
    known = getattr(channel, "_rail_console_admin", None)
    if known is not None:
        result: Admin | str = known
        return result
    certificate = peer_certificate(request)
    if certificate is None:
        answer: Admin | str = "This request came without a client certificate."
    else:
        try:
            identity = identity_from_certificate(certificate)
        except ValueError:
            identity = None
        if identity is None or identity.role != "admin":
            answer = "This certificate is an application's, not an operator's admin certificate."
        else:
            answer = Admin(identity.name, certificate.fingerprint(hashes.SHA256()).hex())
    if channel is not None:
        channel._rail_console_admin = answer
    return answer


def arg(args: dict[bytes, list[bytes]], name: str) -> str:
    """A query's or form's field as text, the last value if repeated; "" when missing,
    so that a handler tests one value for "not given"."""
    values = args.get(name.encode("ascii"))
    return values[-1].decode("utf-8", "replace").strip() if values else ""


def post_form(request: Any) -> dict[bytes, list[bytes]] | None:
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


def not_found() -> Deferred[Answer]:
    """The answer to a path, identifier or action that is not there (or not available
    on this server): the same page whichever it was."""
    return succeed(Answer(404, layout.notice_page("Not found", "No such page.", "/console/")))
