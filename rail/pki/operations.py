"""Certificate operations behind ``rail certs`` and ``rail init``.

Each operation is one step an operator asks for, composed from the pure PKI modules and
the registry; the CLI only parses arguments and prints. Synchronous: these run in the
CLI process, before the reactor starts, or in a worker thread (the console's issuing and
revoking).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import attrs
from cryptography import x509

from rail.config import Config
from rail.pki.ca import CertificateAuthority
from rail.pki.crl import build_crl, crl_number, parse_crl
from rail.pki.files import (
    PKIError,
    crl_path,
    directory_lock,
    write_crl,
    write_key_pair,
)
from rail.pki.issue import ClientRequest, check_client_request, issue_client_certificate
from rail.pki.keys import PrivateKey, generate_private_key, private_key_pem
from rail.pki.ownership import AddressConflict
from rail.pki.registry import CertificateRecord, Registry, RegistryError, registry_path
from rail.pki.source import FileSource, RegistrySource

__all__ = [
    "IssuedClient",
    "IssuedPEM",
    "OperationError",
    "current_crl",
    "file_source",
    "issue_client",
    "issue_client_pem",
    "publish_crl",
    "request_problems",
    "revoke",
]


class OperationError(Exception):
    """An operation refused; ``problems`` are one line each for stderr."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@attrs.frozen
class IssuedPEM:
    """A certificate issued without files (:func:`issue_client_pem`): the certificate
    and its private key as PEM; ``shared`` and ``siblings`` as in :class:`IssuedClient`."""

    record: CertificateRecord
    certificate_pem: bytes
    key_pem: bytes = attrs.field(repr=False)
    shared: tuple[AddressConflict, ...] = ()
    siblings: tuple[CertificateRecord, ...] = ()


@attrs.frozen
class IssuedClient:
    """``shared``: addresses issued although other clients hold them
    (``allow_shared_addresses``); ``siblings``: the name's other valid certificates
    (a rotation in progress)."""

    record: CertificateRecord
    certificate_path: Path
    key_path: Path
    shared: tuple[AddressConflict, ...] = ()
    siblings: tuple[CertificateRecord, ...] = ()


def file_source(config: Config, source: RegistrySource | None) -> RegistrySource:
    """``source``, or the files under ``data_dir`` when none is given: which is only right
    with ``storage.backend: sqlite`` (a caller that forgot the shared registry would
    otherwise issue from a CA and registry no other node sees)."""
    if source is not None:
        return source
    if config.storage.backend != "sqlite":
        raise RegistryError(
            "storage.backend is postgresql: the registry is in the shared database"
            " (rail.shared.registry), not under data_dir"
        )
    return FileSource(config.data_dir)


def publish_crl(data_dir: Path, ca: CertificateAuthority, now: datetime) -> None:
    """Rewrite the CRL from the registry (a running server loads it within a second).

    Rail's CRL is authoritative for Rail alone and rewritten on every change, so it is
    valid until the CA expires: OpenSSL refuses every client once a CRL's nextUpdate has
    passed, and a quiet week without revocations must not take the service down.
    """
    # Under the CA lock so two publishers cannot write an older list last, and numbered
    # strictly above the current file (servers refuse a lower number as a replay), even
    # if the clock went backwards.
    with directory_lock(crl_path(data_dir).parent):
        write_crl(data_dir, current_crl(data_dir, ca, now))


def current_crl(
    data_dir: Path, ca: CertificateAuthority, now: datetime
) -> x509.CertificateRevocationList:
    """The CRL :func:`publish_crl` writes, built from the registry without writing it:
    what a server starting on a full disk serves from memory."""
    until_ca_expiry = ca.certificate.not_valid_after_utc - now
    with Registry.open(registry_path(data_dir)) as registry:
        revoked = registry.revoked()
    number = max(_current_crl_number(data_dir) + 1, int(now.timestamp()))
    return build_crl(ca, revoked, now, next_update=until_ca_expiry, crl_number=number)


def _current_crl_number(data_dir: Path) -> int:
    try:
        return crl_number(parse_crl(crl_path(data_dir).read_bytes()))
    except (OSError, ValueError):
        return -1


def request_problems(config: Config, request: ClientRequest) -> list[str]:
    """Every problem with ``request`` under ``config``, one line each, named by the
    ``rail certs issue`` option that supplied it (nothing is read or written)."""
    # allow_private wins: without it Rail never POSTs to loopback, so an http:// webhook
    # could never be used (rail.webhooks.addresses).
    webhooks = config.webhooks
    return check_client_request(request, webhooks.allow_http_loopback and webhooks.allow_private)


def issue_client(
    config: Config,
    request: ClientRequest,
    out_dir: Path,
    now: datetime,
    force: bool = False,
    allow_shared_addresses: bool = False,
    source: RegistrySource | None = None,
) -> IssuedClient:
    """Issue a client certificate, record it, and write ``NAME.crt`` and ``NAME.key``.

    Raises ``AddressConflictError`` for an address another client's valid certificate
    holds, unless ``allow_shared_addresses``."""
    problems = request_problems(config, request)
    certificate_path = out_dir / f"{request.name}.crt"
    key_path = out_dir / f"{request.name}.key"
    if not problems:
        problems = _output_problems(out_dir, (certificate_path, key_path), force)
    if problems:
        raise OperationError(problems)

    def write(certificate: x509.Certificate, key: PrivateKey) -> None:
        write_key_pair(certificate_path, key_path, certificate, key)

    record, _, shared, siblings = _issue(
        config, request, now, allow_shared_addresses, write, source
    )
    return IssuedClient(
        record=record,
        certificate_path=certificate_path,
        key_path=key_path,
        shared=shared,
        siblings=siblings,
    )


def issue_client_pem(
    config: Config,
    request: ClientRequest,
    now: datetime,
    allow_shared_addresses: bool = False,
    source: RegistrySource | None = None,
) -> IssuedPEM:
    """Issue a client certificate and record it, as :func:`issue_client` does, but write
    no file: the certificate and its key come back as PEM, for the console to show once.
    The key exists nowhere else."""
    problems = request_problems(config, request)
    if problems:
        raise OperationError(problems)
    record, key, shared, siblings = _issue(
        config, request, now, allow_shared_addresses, None, source
    )
    return IssuedPEM(
        record=record,
        certificate_pem=record.pem,
        key_pem=private_key_pem(key),
        shared=shared,
        siblings=siblings,
    )


def _issue(
    config: Config,
    request: ClientRequest,
    now: datetime,
    allow_shared_addresses: bool,
    write: Callable[[x509.Certificate, PrivateKey], None] | None,
    source: RegistrySource | None = None,
) -> tuple[
    CertificateRecord, PrivateKey, tuple[AddressConflict, ...], tuple[CertificateRecord, ...]
]:
    """Make the key, sign, record; ``write`` the pair (a failure revokes the record)."""
    home = file_source(config, source)
    ca, _ = home.load_or_create_ca(config.hostname, now)
    key = generate_private_key(request.key_type)
    certificate = issue_client_certificate(ca, request, key.public_key(), now)
    record = CertificateRecord.from_certificate(certificate, now)
    with home.open() as registry:
        shared = registry.add(record, allow_shared_addresses=allow_shared_addresses)
        siblings = tuple(
            r
            for r in registry.find(request.name)
            if r.name == request.name and r.serial != record.serial and r.status(now) == "valid"
        )
        if write is not None:
            try:
                write(certificate, key)
            except PKIError:
                # Nobody holds this certificate: retire it so the name is free again.
                registry.revoke(format(record.serial, "x"), now)
                raise
    return record, key, tuple(shared), siblings


def _output_problems(out_dir: Path, paths: tuple[Path, ...], force: bool) -> list[str]:
    if not out_dir.is_dir():
        return [f"--out {out_dir}: not a directory"]
    if not os.access(out_dir, os.W_OK):
        return [f"--out {out_dir}: not writable"]
    problems = []
    for path in paths:
        if path.exists() and not path.is_file():
            problems.append(f"{path}: exists and is not a regular file")
        elif path.exists() and not force:
            problems.append(f"{path}: already exists (use --force to overwrite, or --out DIR)")
    return problems


def revoke(
    config: Config,
    name_or_serial: str,
    now: datetime,
    source: RegistrySource | None = None,
) -> list[CertificateRecord]:
    """Revoke in the registry, then publish the CRL, which running servers look at every
    second (rail.pki.revocationwatch); the shared database publishes it, and tells the
    other nodes, in the revoking transaction itself."""
    home = file_source(config, source)
    ca = home.load_ca()
    with home.open() as registry:
        revoked = registry.revoke(name_or_serial, now)
    if not home.crl_in_transaction:
        home.publish_crl(ca, now)
    return revoked


def ensure_directory(path: Path) -> None:
    """Create a directory (private to the operator) if it does not exist."""
    os.makedirs(path, mode=0o700, exist_ok=True)
