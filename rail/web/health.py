"""Liveness and readiness probes.

``/healthz`` says the process answers; ``/readyz`` says it wants traffic, and turns to
503 as soon as shutdown starts so load balancers stop sending before listeners close.
"""

from __future__ import annotations

from typing import Any

import attrs

from rail.web.jsonapi import JSONResource

__all__ = ["Healthz", "Readiness", "Readyz"]


@attrs.define
class Readiness:
    """Shared flag flipped by the service tree when draining begins."""

    draining: bool = False


class Healthz(JSONResource):
    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return b"ok\n"


class Readyz(JSONResource):
    def __init__(self, readiness: Readiness) -> None:
        super().__init__()
        self._readiness = readiness

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        if self._readiness.draining:
            request.setResponseCode(503)
            return b"draining\n"
        return b"ready\n"
