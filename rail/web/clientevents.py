"""``/api/v1/admin/clients/{name}/events``: which events a client gets, for operators.

- ``GET``: ``{"client", "types", "url"}`` (``types`` as picked, ``["all"]`` for every
  type, ``[]`` for none; ``url`` null: the certificate's webhook URL).
- ``PUT`` with ``{"types": [...], "url": "https://..." | null}`` (``url`` optional):
  replaces the settings and answers them once the running server uses them.

Admin certificate only (:func:`rail.web.admin.admin_identity`). An unknown client is
``404 NOT_FOUND``; an unknown type, a URL Rail may not POST to, or nowhere to POST is
``400 INVALID_REQUEST`` naming it. The registry work runs in a thread
(:class:`rail.pki.eventwatch.EventWatch`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from rail.pki.clientevents import ClientEvents, EventSettingsError
from rail.pki.registry import RegistryError, UnknownClientError
from rail.policy.identity import ClientIdentity
from rail.web.admin import AdminJSONResource, admin_identity, known_admin
from rail.web.jsonapi import NotFound, write_error, write_json
from rail.web.send import RETRY_AFTER, finish_later

__all__ = ["ClientEventsResource", "IClientEventSettings", "settings_to_json"]

_log = Logger()


class IClientEventSettings(Protocol):
    """Reads and changes clients' event settings (off the reactor thread)."""

    def settings(self, name: str) -> Deferred[ClientEvents]: ...
    def change(
        self, name: str, types: Iterable[str], url: str | None
    ) -> Deferred[ClientEvents]: ...


def settings_to_json(settings: ClientEvents) -> dict[str, Any]:
    return {"client": settings.name, "types": list(settings.types), "url": settings.url}


class ClientEventsResource(Resource):
    """Mounted at ``/api/v1/admin/clients``. Paths other than ``{name}/events`` go to
    ``other`` (another resource over the same clients, e.g. their webhook secrets), if
    given."""

    def __init__(self, settings: IClientEventSettings, other: Resource | None = None) -> None:
        super().__init__()
        self._settings = settings
        self._other = other

    def getChild(self, path: bytes, request: Any) -> Resource:
        if self._other is not None and request.postpath[:1] != [b"events"]:
            return self._other.getChildWithDefault(path, request)
        name = path.decode("utf-8", "replace")
        return _Client(self._settings, name) if name else NotFound()

    def render(self, request: Any) -> bytes:
        identity = admin_identity(request)
        if isinstance(identity, bytes):
            return identity
        return NotFound().render(request)


class _Client(Resource):
    def __init__(self, settings: IClientEventSettings, name: str) -> None:
        super().__init__()
        self._settings = settings
        self._name = name

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"events":
            return _Events(self._settings, self._name)
        return NotFound()

    def render(self, request: Any) -> bytes:
        identity = admin_identity(request)
        if isinstance(identity, bytes):
            return identity
        return NotFound().render(request)


def _body(request: Any) -> tuple[list[str], str | None] | str:
    """The ``types`` and ``url`` of a PUT body, or why it is unusable."""
    raw = request.content.read() if request.content is not None else b""
    try:
        value = json.loads(raw)
    except ValueError:
        return "the body is not valid JSON"
    if not isinstance(value, dict):
        return "the body must be a JSON object"
    unknown = sorted(set(value) - {"types", "url"})
    if unknown:
        return f"unknown field {unknown[0]!r}"
    types = value.get("types")
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        return 'types: a list of event type names (["all"] for every type, [] for none)'
    url = value.get("url")
    if url is not None and not isinstance(url, str):
        return "url: a URL or null"
    return types, url


class _Events(AdminJSONResource):
    def __init__(self, settings: IClientEventSettings, name: str) -> None:
        super().__init__()
        self._settings = settings
        self._name = name

    def render_GET(self, request: Any) -> Any:
        identity = known_admin(request)
        return self._answer(request, lambda: self._settings.settings(self._name), identity, "read")

    def render_PUT(self, request: Any) -> Any:
        identity = known_admin(request)
        body = _body(request)
        if isinstance(body, str):
            return write_error(request, 400, "INVALID_REQUEST", body)
        types, url = body
        return self._answer(
            request, lambda: self._settings.change(self._name, types, url), identity, "set"
        )

    def _answer(self, request: Any, work: Any, identity: ClientIdentity, what: str) -> Any:
        def done(settings: ClientEvents) -> bytes:
            if what == "set":
                _log.info(
                    "admin {admin} set the events of {client}: {types} to {url}",
                    admin=identity.name,
                    client=self._name,
                    types=",".join(settings.types) or "none",
                    url=settings.url or "the certificate's webhook",
                )
            return write_json(request, 200, settings_to_json(settings))

        def refused(failure: Failure) -> bytes:
            if failure.check(UnknownClientError):
                return write_error(request, 404, "NOT_FOUND", "no such client")
            if failure.check(EventSettingsError):
                problems = failure.value.problems  # type: ignore[union-attr]
                return write_error(request, 400, "INVALID_REQUEST", "; ".join(problems))
            if failure.check(RegistryError):
                _log.warn(
                    "admin {what} of client events failed: {error}",
                    what=what,
                    error=failure.getErrorMessage(),
                )
            else:
                _log.failure(
                    "admin {what} of client events failed", failure, what=what, admin=identity.name
                )
            request.setHeader(b"Retry-After", str(RETRY_AFTER).encode("ascii"))
            return write_error(
                request, 503, "REGISTRY_UNAVAILABLE", "the registry is unavailable; retry later"
            )

        answer = maybeDeferred(work)
        answer.addCallbacks(done, refused)
        return finish_later(request, answer)
