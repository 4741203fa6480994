"""Revoked client-certificate serials, as published in Rail's CRL file.

The registry (SQLite) is the source of truth; every change to it rewrites the signed CRL
atomically (``rail certs revoke``). The TLS layer asks :meth:`Revocations.current` on
every handshake: one ``stat`` call, and a re-read only when the file was replaced, so a
revocation takes effect on the very next connection without touching SQLite on the
reactor thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from twisted.logger import Logger

from rail.pki.crl import revoked_serials
from rail.pki.files import PKIError

__all__ = ["Revocations"]

_log = Logger()

_Signature = tuple[int, int, int, int]


def _signature(result: os.stat_result) -> _Signature:
    # An atomic rename gives a new inode, so even two writes within one mtime tick differ.
    return (result.st_ino, result.st_dev, result.st_mtime_ns, result.st_size)


class Revocations:
    """The set of revoked serials, refreshed when the CRL file changes."""

    def __init__(
        self,
        path: Path,
        ca_certificate: x509.Certificate,
        stat: Callable[[Path], os.stat_result] = os.stat,
    ) -> None:
        self._path = path
        self._ca = ca_certificate
        self._stat = stat
        self._seen: _Signature | None = None
        self._serials: frozenset[int] = frozenset()

    def load(self) -> None:
        """Read the CRL now; a missing or bad file is a start-up error."""
        try:
            signature = _signature(self._stat(self._path))
            self._serials = self._read()
        except (OSError, ValueError) as e:
            raise PKIError(f"{self._path}: {_reason(e)}") from e
        self._seen = signature

    def current(self) -> frozenset[int]:
        """Revoked serials as of the file on disk now.

        A CRL that disappears or fails to verify after start-up keeps the last good set
        (refusing every client because of a damaged file would take the service down)
        and is logged as an error until it is fixed.
        """
        try:
            signature = _signature(self._stat(self._path))
        except OSError as e:
            _log.error("cannot stat CRL {path}: {reason}", path=str(self._path), reason=str(e))
            return self._serials
        if signature != self._seen:
            try:
                self._serials = self._read()
            except (OSError, ValueError) as e:
                _log.error(
                    "keeping previous revocations; CRL {path} unusable: {reason}",
                    path=str(self._path),
                    reason=_reason(e),
                )
            else:
                _log.info("revocations reloaded: {count} revoked", count=len(self._serials))
            self._seen = signature
        return self._serials

    def _read(self) -> frozenset[int]:
        crl = x509.load_pem_x509_crl(self._path.read_bytes())
        return revoked_serials(crl, self._ca)


def _reason(error: Exception) -> str:
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error) or type(error).__name__
