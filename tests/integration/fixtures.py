"""A Rail data directory with a CA and assorted client certificates, for real-TLS tests."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.trial.unittest import SynchronousTestCase

from rail.config import Config, parse_config
from rail.pki.ca import CertificateAuthority, create_ca, signature_hash
from rail.pki.files import load_or_create_ca, write_file_atomic
from rail.pki.issue import ClientRequest, issue_client_certificate, issue_server_certificate
from rail.pki.keys import PrivateKey, generate_private_key, private_key_pem
from tests.support.postgres import postgres_dsn


def storage_overrides(
    testcase: SynchronousTestCase, backend: str | None = None
) -> dict[str, object]:
    """``make_config`` overrides putting the queue on ``backend``: ``sqlite`` (nothing to
    change) or ``postgresql`` (a fresh database of the test cluster, dropped after
    ``testcase``). The default is ``RAIL_TEST_BACKEND`` from the environment, else sqlite,
    so ``RAIL_TEST_BACKEND=postgresql`` runs the tests that use this on PostgreSQL."""
    chosen = backend or os.environ.get("RAIL_TEST_BACKEND", "sqlite")
    if chosen == "sqlite":
        return {}
    return {"storage": {"backend": "postgresql", "dsn": postgres_dsn(testcase)}}


def make_config(data_dir: Path, **overrides: object) -> Config:
    raw: dict[str, object] = {
        "hostname": "rail.test",
        "data_dir": str(data_dir),
        "local_domains": ["rail.test"],
        "listen": {
            "https": "tcp:0:interface=127.0.0.1",
            "submission": "tcp:0:interface=127.0.0.1",
            "inbound": None,
            "http": None,
            "dns": None,
        },
        "tls": {"self_signed": True},
        "shutdown": {"drain_delay": "0s"},
    }
    raw.update(overrides)
    return parse_config(raw, data_dir)


@attrs.frozen
class Identity:
    certificate: x509.Certificate
    cert_path: Path
    key_path: Path

    @property
    def pair(self) -> tuple[Path, Path]:
        return (self.cert_path, self.key_path)


def save_identity(
    directory: Path, name: str, certificate: x509.Certificate, key: PrivateKey
) -> Identity:
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    write_file_atomic(cert_path, certificate.public_bytes(Encoding.PEM), 0o644)
    write_file_atomic(key_path, private_key_pem(key), 0o600)
    return Identity(certificate, cert_path, key_path)


def client_identity(
    directory: Path,
    ca: CertificateAuthority,
    name: str,
    *,
    now: datetime | None = None,
    validity: timedelta = timedelta(days=30),
    key_type: str = "ed25519",
    emails: tuple[str, ...] = ("app@rail.test",),
) -> Identity:
    key = generate_private_key(key_type)
    request = ClientRequest(
        name=name,
        emails=emails,
        webhook="https://app.example/hook",
        key_type=key_type,
        validity=validity,
    )
    certificate = issue_client_certificate(ca, request, key.public_key(), now or datetime.now(UTC))
    return save_identity(directory, name, certificate, key)


def server_auth_identity(directory: Path, ca: CertificateAuthority) -> Identity:
    key = generate_private_key("ecdsa-p256")
    certificate = issue_server_certificate(
        ca, "app.rail.test", ("app.rail.test",), key.public_key(), datetime.now(UTC)
    )
    return save_identity(directory, "server-auth-only", certificate, key)


def self_signed_identity(directory: Path) -> Identity:
    """A self-signed certificate that otherwise looks like a client certificate."""
    key = generate_private_key("ed25519")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "selfie")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name("app@rail.test")]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, signature_hash(key))
    )
    return save_identity(directory, "selfie", certificate, key)


def rail_ca(data_dir: Path) -> CertificateAuthority:
    ca, _ = load_or_create_ca(data_dir, "rail.test", datetime.now(UTC))
    return ca


def other_ca() -> CertificateAuthority:
    return create_ca("Some Other CA", datetime.now(UTC))
