"""Revoked client-certificate serials, as published in Rail's CRL file.

The registry (SQLite) is the source of truth; every change to it rewrites the signed CRL
atomically (``rail certs revoke``). A running server learns of it by looking at the file:
:class:`RevocationWatch` does so every second and on SIGHUP, in a worker thread (one
``stat``; the file is read, parsed and its signature verified only when it was replaced),
and installs the new set on the reactor thread. Everything that decides (the TLS
handshake, each SMTP ``MAIL FROM``, each HTTP request) then consults the loaded set
without touching the disk. OpenSSL checks the leaf against the parsed CRL itself (so a
revoked client gets a "certificate revoked" alert, not a generic failure).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import attrs
from cryptography import x509
from twisted.logger import Logger

from rail.pki.crl import crl_number, parse_crl, revoked_serials
from rail.pki.files import PKIError

__all__ = ["CRLSource", "Revocations"]

_log = Logger()

_Signature = object


def _signature(result: os.stat_result) -> _Signature:
    # An atomic rename gives a new inode, so even two writes within one mtime tick differ.
    return (result.st_ino, result.st_dev, result.st_mtime_ns, result.st_size)


class CRLSource(Protocol):
    """Where the published CRL is: the file under ``data_dir`` or the shared database
    (:class:`rail.shared.registry.SharedCRL`)."""

    def __str__(self) -> str:
        """What to name in messages."""
        ...

    def signature(self) -> object:
        """Something that changes whenever a new CRL is published (cheap: looked at every
        second); raises OSError when it cannot be looked at."""
        ...

    def read_bytes(self) -> bytes:
        """The CRL as published; raises OSError when it cannot be read."""
        ...


class _FileCRL:
    def __init__(self, path: Path, stat: Callable[[Path], os.stat_result]) -> None:
        self._path = path
        self._stat = stat

    def __str__(self) -> str:
        return str(self._path)

    def signature(self) -> object:
        return _signature(self._stat(self._path))

    def read_bytes(self) -> bytes:
        return self._path.read_bytes()


class Revocations:
    """The set of revoked serials, refreshed when the CRL file changes."""

    def __init__(
        self,
        path: Path | CRLSource,
        ca_certificate: x509.Certificate,
        stat: Callable[[Path], os.stat_result] = os.stat,
    ) -> None:
        self._path: CRLSource = _FileCRL(path, stat) if isinstance(path, Path) else path
        self._ca = ca_certificate
        self._seen: _Signature | None = None
        self._serials: frozenset[int] = frozenset()
        self._crl: x509.CertificateRevocationList | None = None
        self._number = -1
        self._problem: str | None = None
        self.generation = 0

    @property
    def crl(self) -> x509.CertificateRevocationList:
        """The last good CRL (after :meth:`load`)."""
        if self._crl is None:
            raise RuntimeError("Revocations.load() was not called")
        return self._crl

    @property
    def serials(self) -> frozenset[int]:
        """Revoked serials as of the last refresh, without looking at the disk."""
        return self._serials

    def load(self) -> None:
        """Read the CRL now; a missing or bad file is a start-up error."""
        try:
            signature = self._path.signature()
            self._read()
        except (OSError, ValueError) as e:
            raise PKIError(f"{self._path}: {_reason(e)}") from e
        self._seen = signature

    def adopt(self, crl: x509.CertificateRevocationList) -> None:
        """Use ``crl`` (built from the registry at start-up, when the file could not be
        rewritten for lack of disk space) instead of the file as it is now; the file is
        read again once it changes, and only if it is not older than ``crl``."""
        self._serials = revoked_serials(crl, self._ca)
        self._crl, self._number = crl, crl_number(crl)
        self.generation += 1
        try:
            self._seen = self._path.signature()
        except OSError:
            self._seen = None

    def current(self) -> frozenset[int]:
        """Revoked serials as of the file on disk now (see :meth:`refresh`); for callers
        off the reactor thread (the server uses :attr:`serials`)."""
        self.refresh()
        return self._serials

    def refresh(self) -> None:
        """Re-read the CRL if the file changed since the last look (synchronously: at
        start-up, in tests, or from a thread that owns this object)."""
        self.apply(self.look())

    def look(self) -> _Look:
        """Stat the file and, if it changed, read and verify it. Changes nothing here, so
        it may run in a worker thread while the reactor reads :attr:`serials`; hand the
        result to :meth:`apply` on the thread that owns this object."""
        try:
            signature = self._path.signature()
        except OSError as e:
            return _Look(None, problem=f"cannot stat CRL {self._path}: {_reason(e)}")
        if signature == self._seen:
            return _Look(signature)
        try:
            crl = parse_crl(self._path.read_bytes())
            serials = revoked_serials(crl, self._ca)
        except (OSError, ValueError) as e:
            return _Look(
                signature,
                problem=f"keeping previous revocations; CRL {self._path} unusable: {_reason(e)}",
            )
        return _Look(signature, crl=crl, serials=serials, number=crl_number(crl))

    def apply(self, look: _Look) -> None:
        """Install what :meth:`look` found.

        A CRL that disappears, fails to verify or is older than the loaded one (a replayed
        file would un-revoke) keeps the last good set (refusing every client because of a
        damaged file would take the service down) and is logged as an error, once per
        problem rather than at every look.
        """
        problem = look.problem
        if look.crl is not None and look.number < self._number:
            problem = (
                f"keeping previous revocations; CRL {self._path} unusable: CRL number"
                f" {look.number} is older than the loaded {self._number}"
            )
        elif look.crl is not None:
            self._serials, self._crl, self._number = look.serials, look.crl, look.number
            self.generation += 1
            _log.info("revocations reloaded: {count} revoked", count=len(self._serials))
        if problem is not None and problem != self._problem:
            _log.error("{problem}", problem=problem)
        self._problem = problem
        if look.signature is not None:
            self._seen = look.signature

    def _read(self) -> None:
        crl = parse_crl(self._path.read_bytes())
        serials = revoked_serials(crl, self._ca)
        number = crl_number(crl)
        if number < self._number:
            raise ValueError(f"CRL number {number} is older than the loaded {self._number}")
        self._serials, self._crl, self._number = serials, crl, number
        self.generation += 1


@attrs.frozen
class _Look:
    """What one look at the CRL file found: its signature (None when it cannot be
    stat'ed), a new verified CRL if the file changed, or a problem to log."""

    signature: _Signature | None
    crl: x509.CertificateRevocationList | None = None
    serials: frozenset[int] = frozenset()
    number: int = -1
    problem: str | None = None


def _reason(error: Exception) -> str:
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error) or type(error).__name__
