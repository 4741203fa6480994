"""``POST /api/v1/admin/clients/{name}/webhook-secret/rotate``: a new ``v1`` webhook
secret for a client, for an admin certificate (what ``rail certs webhook-secret rotate``
does, on the running server).

Body (optional): ``{"overlap": "24h"}``, how long the replaced secret keeps signing too.
Answer: ``{"client", "secret": "whsec_...", "previous_until": RFC 3339, "format":
"standard-webhooks"}``; ``404 NOT_FOUND`` for a name no certificate has, ``503
REGISTRY_UNAVAILABLE`` when the registry cannot be written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from rail.config.units import parse_duration
from rail.pki.files import PKIError
from rail.web.admin import AdminJSONResource, known_admin
from rail.web.jsonapi import NotFound, write_error, write_json
from rail.web.send import finish_later
from rail.webhooks.key import secret_text
from rail.webhooks.secrets import DEFAULT_OVERLAP, Rotation, UnknownClientError

__all__ = ["ClientsResource"]

_log = Logger()

Rotate = Callable[[str, float], Deferred[Rotation]]
_MAX_OVERLAP = 30 * 24 * 3600.0


class ClientsResource(Resource):
    """Mounted at ``/api/v1/admin/clients``."""

    def __init__(self, rotate: Rotate) -> None:
        super().__init__()
        self._rotate = rotate

    def getChild(self, path: bytes, request: Any) -> Resource:
        rest = request.postpath
        if rest == [b"webhook-secret", b"rotate"]:
            request.postpath = []
            return _Rotate(self._rotate, path.decode("utf-8", "replace"))
        return NotFound()


class _Rotate(AdminJSONResource):
    def __init__(self, rotate: Rotate, client: str) -> None:
        super().__init__()
        self._rotate = rotate
        self._client = client

    def render_POST(self, request: Any) -> Any:
        identity = known_admin(request)
        overlap = _overlap(request.content.read() if request.content is not None else b"")
        if isinstance(overlap, str):
            return write_error(request, 400, "INVALID_REQUEST", overlap)
        _log.info(
            "admin {admin} rotates the webhook secret of {client}",
            admin=identity.name,
            client=self._client,
        )
        answer = self._rotate(self._client, overlap).addCallbacks(
            lambda rotation: self._rotated(request, rotation), lambda f: self._failed(request, f)
        )
        return finish_later(request, answer)

    def _rotated(self, request: Any, rotation: Rotation) -> bytes:
        request.setHeader(b"cache-control", b"no-store")
        until = datetime.fromtimestamp(rotation.previous_until, UTC)
        return write_json(
            request,
            200,
            {
                "client": rotation.client,
                "secret": secret_text(rotation.secret),
                "previous_until": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "format": "standard-webhooks",
            },
        )

    def _failed(self, request: Any, failure: Failure) -> bytes:
        if failure.check(UnknownClientError):
            return write_error(request, 404, "NOT_FOUND", "no certificate has this client name")
        if failure.check(PKIError):
            _log.error("cannot rotate a webhook secret: {error}", error=str(failure.value))
        else:
            _log.failure("rotating a webhook secret failed", failure)
        return write_error(
            request, 503, "REGISTRY_UNAVAILABLE", "the registry cannot be written; retry later"
        )


def _overlap(raw: bytes) -> float | str:
    """The overlap the body asks for, or why the body is unusable."""
    if not raw.strip():
        return DEFAULT_OVERLAP
    try:
        body = json.loads(raw)
    except ValueError:
        return "the body is not valid JSON"
    if not isinstance(body, dict) or set(body) - {"overlap"}:
        return 'the body is a JSON object with at most "overlap"'
    if "overlap" not in body:
        return DEFAULT_OVERLAP
    try:
        overlap = parse_duration(body["overlap"])
    except ValueError as e:
        return f"overlap: {e}"
    if not 0 <= overlap <= _MAX_OVERLAP:
        return "overlap: from 0s to 30d"
    return overlap
