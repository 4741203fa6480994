"""``POST /api/v1/admin/certificates/{serial}/revoke``: revoke a client certificate through
the running server, for an admin certificate (what ``rail certs revoke SERIAL`` does).

The answer comes once the revocation is committed and this node has loaded the new CRL:
``200 {"revoked": [{"name", "serial", "revoked_at"}]}``. With the shared database the
other nodes are notified by the same commit (docs/scaling.md). ``400 INVALID_REQUEST`` for
a serial that is not hexadecimal, ``409 NOT_REVOKED`` when there is nothing to revoke (no
such certificate, or already revoked), ``503 REGISTRY_UNAVAILABLE`` when the registry
cannot be written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from rail.pki.files import PKIError
from rail.pki.inspect import format_time
from rail.pki.registry import CertificateRecord, NothingToRevokeError
from rail.web.admin import AdminJSONResource, known_admin
from rail.web.jsonapi import NotFound, write_error, write_json
from rail.web.send import finish_later

__all__ = ["CertificatesResource", "Revoke"]

_log = Logger()

Revoke = Callable[[str], Deferred[Sequence[CertificateRecord]]]
"""Revokes the certificate with this serial (hex) and fires once it is in force here."""

_SERIAL = re.compile(r"[0-9a-f]{1,40}")


class CertificatesResource(Resource):
    """Mounted at ``/api/v1/admin/certificates``."""

    def __init__(self, revoke: Revoke) -> None:
        super().__init__()
        self._revoke = revoke

    def getChild(self, path: bytes, request: Any) -> Resource:
        if request.postpath == [b"revoke"]:
            request.postpath = []
            return _Revoke(self._revoke, path.decode("ascii", "replace").lower())
        return NotFound()


class _Revoke(AdminJSONResource):
    def __init__(self, revoke: Revoke, serial: str) -> None:
        super().__init__()
        self._revoke = revoke
        self._serial = serial

    def render_POST(self, request: Any) -> Any:
        identity = known_admin(request)
        if not _SERIAL.fullmatch(self._serial):
            return write_error(
                request, 400, "INVALID_REQUEST", "the serial is 1 to 40 hexadecimal digits"
            )
        _log.info(
            "admin {admin} revokes certificate {serial}", admin=identity.name, serial=self._serial
        )
        answer = self._revoke(self._serial).addCallbacks(
            lambda records: self._revoked(request, records),
            lambda failure: self._failed(request, failure),
        )
        return finish_later(request, answer)

    def _revoked(self, request: Any, records: Sequence[CertificateRecord]) -> bytes:
        return write_json(
            request,
            200,
            {
                "revoked": [
                    {
                        "name": record.name,
                        "serial": format(record.serial, "x"),
                        "revoked_at": format_time(record.revoked_at)
                        if record.revoked_at is not None
                        else None,
                    }
                    for record in records
                ]
            },
        )

    def _failed(self, request: Any, failure: Failure) -> bytes:
        if failure.check(NothingToRevokeError):
            return write_error(request, 409, "NOT_REVOKED", str(failure.value))
        if failure.check(PKIError):
            _log.error(
                "cannot revoke certificate {serial}: {error}",
                serial=self._serial,
                error=failure.getErrorMessage(),
            )
            return write_error(
                request, 503, "REGISTRY_UNAVAILABLE", "the registry cannot be written now"
            )
        _log.failure("revoking certificate {serial} failed", failure, serial=self._serial)
        return write_error(request, 500, "INTERNAL_ERROR", "the revocation failed")
