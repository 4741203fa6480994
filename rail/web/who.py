"""``/api/who``: what Rail makes of a client certificate.

GET inspects the certificate the caller authenticated with (apps use it to check their
set-up); POST inspects any certificate sent as PEM or DER, with no authentication, so an
operator can ask "would Rail accept this file?" before handing it out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from twisted.internet.interfaces import IReactorTime

from rail.pki.inspect import info_to_json, inspect_certificate, parse_certificate
from rail.web.identity import peer_certificate
from rail.web.jsonapi import JSONResource, certificate_required, write_error, write_json

__all__ = ["Who"]


class Who(JSONResource):
    def __init__(
        self,
        ca: x509.Certificate,
        revoked: Callable[[], frozenset[int]],
        clock: IReactorTime,
        max_body: int,
    ) -> None:
        super().__init__()
        self._ca = ca
        self._revoked = revoked
        self._clock = clock
        self._max_body = max_body

    def _describe(self, request: Any, certificate: x509.Certificate) -> bytes:
        now = datetime.fromtimestamp(self._clock.seconds(), UTC)
        info = inspect_certificate(certificate, self._ca, self._revoked(), now)
        return write_json(request, 200, info_to_json(info))

    def render_GET(self, request: Any) -> bytes:
        certificate = peer_certificate(request)
        if certificate is None:
            return certificate_required(request)
        return self._describe(request, certificate)

    def render_POST(self, request: Any) -> bytes:
        body = request.content.read(self._max_body + 1)
        if not body.strip():
            return write_error(
                request, 400, "INVALID_CERTIFICATE", "send a PEM or DER certificate as the body"
            )
        try:
            certificate = parse_certificate(body)
        except ValueError as e:
            return write_error(request, 400, "INVALID_CERTIFICATE", str(e))
        return self._describe(request, certificate)
