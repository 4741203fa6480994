"""JSON responses and errors shared by Rail's HTTP resources.

Every error an app or operator sees is ``{"error": {"code", "message"}}`` with a stable
code (documented in docs/api.md), never Twisted's HTML error pages.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

__all__ = [
    "JSONResource",
    "certificate_required",
    "error_body",
    "json_body",
    "write_error",
    "write_json",
]


def json_body(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def error_body(code: str, message: str) -> bytes:
    return json_body({"error": {"code": code, "message": message}})


_PHRASES = {429: b"Too Many Requests"}
"""Reason phrases Twisted's table lacks (it would say ``Unknown Status``)."""


def write_json(request: IRequest, status: int, value: Any) -> bytes:
    """Set status and headers for a JSON answer and return its body for render_*."""
    request.setResponseCode(status, _PHRASES.get(status))
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    return json_body(value)


def write_error(request: IRequest, status: int, code: str, message: str) -> bytes:
    return write_json(request, status, {"error": {"code": code, "message": message}})


def certificate_required(request: IRequest) -> bytes:
    """The 401 for endpoints that need the caller's client certificate."""
    request.setHeader(b"WWW-Authenticate", b"mutual-tls")
    return write_error(
        request,
        401,
        "CLIENT_CERTIFICATE_REQUIRED",
        "present a client certificate issued by this Rail (curl --cert/--key)",
    )


class JSONResource(Resource):
    """A leaf whose unsupported methods and unknown children answer in JSON."""

    isLeaf = True

    def render(self, request: Any) -> bytes:
        method = request.method.decode("ascii", "replace")
        handler = "render_GET" if method == "HEAD" else f"render_{method}"
        if getattr(self, handler, None) is None:
            # Resource defines render_HEAD for everyone; it exists only where GET does.
            allowed = sorted(
                name.removeprefix("render_")
                for name in dir(self)
                if name.startswith("render_") and (name != "render_HEAD" or self._has_get())
            )
            request.setHeader(b"Allow", ", ".join(allowed).encode("ascii"))
            return write_error(request, 405, "METHOD_NOT_ALLOWED", f"{method} is not allowed here")
        if request.postpath not in ([], [b""]):
            return write_error(request, 404, "NOT_FOUND", "no such resource")
        result: bytes = super().render(request)
        return result

    def _has_get(self) -> bool:
        return getattr(self, "render_GET", None) is not None


class NotFound(Resource):
    """JSON 404 for every path nobody registered."""

    isLeaf = True

    def render(self, request: Any) -> bytes:
        return write_error(request, 404, "NOT_FOUND", "no such resource")
