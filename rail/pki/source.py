"""Where Rail's PKI state lives: the CA, the registry of certificates and the published CRL.

With ``storage.backend: sqlite`` that is files under ``data_dir`` (:class:`FileSource`:
``ca/``, ``registry.sqlite3``, ``ca/crl.pem``); with ``postgresql`` it is the shared
database every node uses (:class:`rail.shared.registry.SharedSource`), so that any node,
and ``rail certs`` on any host, issues with the same CA and sees the same registry. The
code that issues, revokes and reads takes a :class:`RegistrySource` and does not know
which one it has. Synchronous, like the registry: the CLI calls it, the server before the
reactor runs or in a worker thread.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cryptography import x509

from rail.pki.ca import CertificateAuthority
from rail.pki.files import crl_path, load_ca, load_or_create_ca
from rail.pki.registry import Registry, registry_path
from rail.pki.revocations import CRLSource

__all__ = ["FileSource", "RegistrySource"]


class RegistrySource(Protocol):
    """The CA, the registry and the CRL of one Rail installation."""

    def __str__(self) -> str:
        """What to name in messages (a path, or "the shared database")."""
        ...

    def exists(self) -> bool:
        """Whether a registry was made yet (reading must not create a data directory)."""
        ...

    def open(self) -> Registry:
        """The registry, made if needed; close it after use. Raises RegistryError."""
        ...

    def state(self, topic: str) -> object:
        """Something that changes when ``topic`` (``client_events``, ``certificates``,
        ``webhook_secrets``) may have changed: cheap, looked at every second. Raises
        RegistryError when it cannot be looked at."""
        ...

    def load_ca(self) -> CertificateAuthority:
        """The CA; PKIError if there is none yet."""
        ...

    def load_or_create_ca(self, hostname: str, now: datetime) -> tuple[CertificateAuthority, bool]:
        """The CA, made on first use (by one process, however many start at once)."""
        ...

    def publish_crl(self, ca: CertificateAuthority, now: datetime) -> None:
        """Publish the CRL built from the registry's revocations now."""
        ...

    def current_crl(
        self, ca: CertificateAuthority, now: datetime
    ) -> x509.CertificateRevocationList:
        """The CRL :meth:`publish_crl` would publish, without publishing it."""
        ...

    def crl(self) -> CRLSource | Path:
        """Where a running server reads the published CRL from."""
        ...

    @property
    def crl_in_transaction(self) -> bool:
        """Whether the registry's own revoking transaction publishes the CRL (the shared
        database does, and notifies the other nodes in it); else :meth:`publish_crl`
        follows a revocation."""
        ...


class FileSource:
    """The embedded PKI state: files under ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def __str__(self) -> str:
        return str(registry_path(self.data_dir))

    def exists(self) -> bool:
        return registry_path(self.data_dir).exists()

    def open(self) -> Registry:
        return Registry.open(registry_path(self.data_dir))

    def state(self, topic: str) -> object:
        """The registry's and its write-ahead log's size, modification time and inode:
        they change when another process commits (whatever the topic)."""
        path = registry_path(self.data_dir)
        state: list[tuple[int, int, int] | None] = []
        for each in (path, path.with_name(path.name + "-wal")):
            try:
                stat = os.stat(each)
            except FileNotFoundError:
                state.append(None)
            else:
                state.append((stat.st_size, stat.st_mtime_ns, stat.st_ino))
        return tuple(state)

    def load_ca(self) -> CertificateAuthority:
        return load_ca(self.data_dir)

    def load_or_create_ca(self, hostname: str, now: datetime) -> tuple[CertificateAuthority, bool]:
        return load_or_create_ca(self.data_dir, hostname, now)

    def publish_crl(self, ca: CertificateAuthority, now: datetime) -> None:
        from rail.pki.operations import publish_crl

        publish_crl(self.data_dir, ca, now)

    def current_crl(
        self, ca: CertificateAuthority, now: datetime
    ) -> x509.CertificateRevocationList:
        from rail.pki.operations import current_crl

        return current_crl(self.data_dir, ca, now)

    def crl(self) -> CRLSource | Path:
        return crl_path(self.data_dir)

    crl_in_transaction = False
