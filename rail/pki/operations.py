"""Certificate operations behind ``rail certs`` and ``rail init``.

Each operation is one step an operator asks for, composed from the pure PKI modules and
the registry; the CLI only parses arguments and prints. Synchronous: these run in the
CLI process or before the reactor starts.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import attrs
from cryptography.hazmat.primitives.serialization import Encoding

from rail.config import Config
from rail.pki.ca import CertificateAuthority
from rail.pki.crl import build_crl
from rail.pki.files import PKIError, load_or_create_ca, write_crl, write_file_atomic
from rail.pki.inspect import inspect_certificate
from rail.pki.issue import ClientRequest, check_client_request, issue_client_certificate
from rail.pki.keys import generate_private_key, private_key_pem
from rail.pki.registry import CertificateRecord, Registry, registry_path

__all__ = ["IssuedClient", "OperationError", "issue_client", "publish_crl", "revoke"]


class OperationError(Exception):
    """An operation refused; ``problems`` are one line each for stderr."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@attrs.frozen
class IssuedClient:
    record: CertificateRecord
    certificate_path: Path
    key_path: Path


def publish_crl(data_dir: Path, ca: CertificateAuthority, now: datetime) -> None:
    """Rewrite the CRL from the registry (the TLS layer picks it up on the next handshake).

    Rail's CRL is authoritative for Rail alone and rewritten on every change, so it is
    valid until the CA expires: OpenSSL refuses every client once a CRL's nextUpdate has
    passed, and a quiet week without revocations must not take the service down.
    """
    with Registry.open(registry_path(data_dir)) as registry:
        revoked = registry.revoked()
    until_ca_expiry = ca.certificate.not_valid_after_utc - now
    write_crl(data_dir, build_crl(ca, revoked, now, next_update=until_ca_expiry))


def issue_client(
    config: Config, request: ClientRequest, out_dir: Path, now: datetime, force: bool = False
) -> IssuedClient:
    """Issue a client certificate, record it, and write ``NAME.crt`` and ``NAME.key``."""
    problems = check_client_request(request, config.webhooks.allow_http_loopback)
    certificate_path = out_dir / f"{request.name}.crt"
    key_path = out_dir / f"{request.name}.key"
    if not problems and not force:
        problems = [
            f"{path}: already exists (use --force to overwrite, or --out DIR)"
            for path in (certificate_path, key_path)
            if path.exists()
        ]
    if not problems and not out_dir.is_dir():
        problems = [f"--out {out_dir}: not a directory"]
    if problems:
        raise OperationError(problems)
    ca, _ = load_or_create_ca(config.data_dir, config.hostname, now)
    key = generate_private_key(request.key_type)
    certificate = issue_client_certificate(ca, request, key.public_key(), now)
    info = inspect_certificate(certificate, ca.certificate, frozenset(), now)
    pem = certificate.public_bytes(Encoding.PEM)
    record = CertificateRecord(
        serial=certificate.serial_number,
        name=request.name,
        senders=info.senders,
        webhook=info.webhook,
        key_type=info.key_type,
        not_before=info.not_before,
        not_after=info.not_after,
        issued_at=now,
        revoked_at=None,
        fingerprint_sha256=info.fingerprint_sha256,
        pem=pem,
    )
    with Registry.open(registry_path(config.data_dir)) as registry:
        registry.add(record)
    try:
        write_file_atomic(key_path, private_key_pem(key), 0o600)
        write_file_atomic(certificate_path, pem, 0o644)
    except OSError as e:
        raise PKIError(f"{e.filename}: {e.strerror}") from e
    return IssuedClient(record=record, certificate_path=certificate_path, key_path=key_path)


def revoke(config: Config, name_or_serial: str, now: datetime) -> list[CertificateRecord]:
    """Revoke in the registry, then publish the CRL so running servers refuse at once."""
    ca, _ = load_or_create_ca(config.data_dir, config.hostname, now)
    with Registry.open(registry_path(config.data_dir)) as registry:
        revoked = registry.revoke(name_or_serial, now)
    publish_crl(config.data_dir, ca, now)
    return revoked


def ensure_directory(path: Path) -> None:
    """Create a directory (private to the operator) if it does not exist."""
    os.makedirs(path, mode=0o700, exist_ok=True)
