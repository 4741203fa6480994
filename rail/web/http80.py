"""The plain-HTTP site on port 80: ACME HTTP-01 answers, and a redirect to HTTPS for the rest.

``GET /.well-known/acme-challenge/<token>`` answers the key authorization of a challenge the
ACME client is waiting on (RFC 8555 §8.3), and 404 for any other token. Every other path
and method answers ``301`` to the same path and query on ``https://<hostname>``: the host
comes from the configuration, never from the request's ``Host`` header, so port 80 cannot
be used to redirect anyone elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Site

from rail.acme.challenges import PendingChallenges, is_token
from rail.web.send import finish_later
from rail.web.site import RailSite

__all__ = ["CHALLENGE_PREFIX", "Port80", "http80_site", "redirect_target"]

CHALLENGE_PREFIX = b"/.well-known/acme-challenge/"
_MAX_BODY = 4096
"""Nothing on port 80 reads a body; refuse big ones rather than buffer them."""
_UNSAFE = re.compile(rb"[^\x21-\x7e]")


def redirect_target(hostname: str, uri: bytes) -> bytes:
    """``https://<hostname>`` plus the path and query of the request target ``uri``.

    An absolute-form target (``GET http://other/x``) keeps only its path and query, and
    bytes that do not belong in a header (controls, spaces, non-ASCII) are
    percent-encoded.
    """
    if not uri.startswith(b"/"):
        parts = urlsplit(uri)
        uri = parts.path or b"/"
        if not uri.startswith(b"/"):
            uri = b"/"
        if parts.query:
            uri += b"?" + parts.query
    elif uri.startswith(b"//"):
        # "//evil.example/x" is the path "//evil.example/x" on our host, but some clients
        # read a Location ending in it as a scheme-relative URL: collapse the slashes.
        uri = b"/" + uri.lstrip(b"/")
    uri = _UNSAFE.sub(lambda m: b"%%%02X" % m[0][0], uri)
    return b"https://" + hostname.encode("ascii") + uri


class Port80(Resource):
    """The whole port-80 tree in one leaf: challenge answers or redirects."""

    isLeaf = True

    def __init__(
        self,
        hostname: str,
        challenges: PendingChallenges,
        lookup: Callable[[str], Deferred[str | None]] | None = None,
    ) -> None:
        cast(Any, super()).__init__()  # Resource is untyped (mypy --strict)
        self._hostname = hostname
        self._challenges = challenges
        self._lookup = lookup

    def render(self, request: Any) -> bytes:
        path: bytes = request.path
        if request.method in (b"GET", b"HEAD") and path.startswith(CHALLENGE_PREFIX):
            return self._challenge(request, path[len(CHALLENGE_PREFIX) :])
        request.setResponseCode(301)
        request.setHeader(b"location", redirect_target(self._hostname, request.uri))
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"moved to https\n"

    def _challenge(self, request: Any, raw_token: bytes) -> Any:
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        try:
            token = raw_token.decode("ascii")
        except UnicodeDecodeError:
            token = ""
        answer = self._challenges.get(token) if is_token(token) else None
        if answer is None and self._lookup is not None and is_token(token):
            # Another node's order (several nodes share the database): ask it.
            found = self._lookup(token).addCallback(lambda text: _answer(request, text))
            return finish_later(request, found)
        return _answer(request, answer)


def _answer(request: Any, answer: str | None) -> bytes:
    if answer is None:
        request.setResponseCode(404)
        return b"no such challenge\n"
    return answer.encode("ascii")


def http80_site(
    hostname: str,
    challenges: PendingChallenges,
    *,
    clock: IReactorTime | None = None,
    idle_timeout: float = 60.0,
    deadlines: dict[str, Any] | None = None,
    lookup: Callable[[str], Deferred[str | None]] | None = None,
) -> Site:
    """The site for the ``listen.http`` port; ``challenges`` is shared with the ACME
    service (:func:`rail.acme.service.build_acme`); ``deadlines`` as for
    :func:`rail.web.site.build_site`; ``lookup(token)`` answers a token this node does not
    hold (another node's order, :func:`rail.shared.acme.lookup`)."""
    return RailSite(
        Port80(hostname, challenges, lookup),
        max_body=_MAX_BODY,
        idle_timeout=idle_timeout,
        clock=clock,
        **{"name": "http", **(deadlines or {})},
    )
