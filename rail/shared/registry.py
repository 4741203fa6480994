"""The PKI state in the shared database: the CA, the registry and the CRL of every node.

Why the CA key is in the database too: every node must be able to revoke (through its
admin API or console) and ``rail certs`` must work on any host, and a revocation is only
served once a CRL signed by the CA says so; a CA key on one node's disk would make that
node the only one able to revoke, a single point of failure for the one operation that
cannot wait. The cost is that whoever can read the shared schema can issue client
certificates: the database credentials are as sensitive as the CA key (docs/scaling.md).

A revocation publishes the new CRL in the revoking transaction itself, under the
registry's advisory lock (so CRL numbers only grow), bumps the ``revocations`` version and
sends a NOTIFY: the other nodes read it when notified (:mod:`rail.shared.listen`) and
every second anyway (the version is one indexed row).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509

from rail.config import Config
from rail.pki.ca import CertificateAuthority, create_ca
from rail.pki.clientevents import write_client_events
from rail.pki.crl import build_crl, crl_number, crl_pem, parse_crl
from rail.pki.files import (
    CERTIFICATE_MODE,
    PKIError,
    ca_cert_path,
    ca_key_path,
    certificate_pem,
    load_ca,
    write_file_atomic,
)
from rail.pki.keys import load_private_key_pem, private_key_pem, public_key_der
from rail.pki.registry import CertificateRecord, Registry, RegistryError, registry_path
from rail.pki.revocations import CRLSource
from rail.pki.source import FileSource, RegistrySource
from rail.shared.schema import Connections, bump
from rail.store.db import DATABASE_ERRORS

__all__ = ["SharedCRL", "SharedSource", "export_ca_certificate", "registry_source"]

_REGISTRY_LOCK = "SELECT pg_advisory_xact_lock(126939302182914)"
"""Serialises the registry's writers across nodes, as SQLite's ``BEGIN IMMEDIATE`` does
for processes sharing the file: the address-conflict check and the CRL number depend on
what the previous writer committed."""

_CA_CERT, _CA_KEY, _CRL = "ca.crt", "ca.key", "crl.pem"
_LABEL = "the shared database (storage.dsn)"


class SharedSource:
    """The PKI state of every node, in ``rail_shared`` (see :class:`RegistrySource`)."""

    crl_in_transaction = True

    def __init__(self, dsn: str, *, data_dir: Path | None = None) -> None:
        """``data_dir``: where a CA made before the move to PostgreSQL may be found; it is
        imported on first use, so certificates already handed out stay valid."""
        self.connections = Connections(dsn)
        self._data_dir = data_dir

    def __str__(self) -> str:
        return _LABEL

    def close(self) -> None:
        self.connections.close()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        try:
            connection = self.connections.take()
        except DATABASE_ERRORS as e:
            raise RegistryError(f"{_LABEL}: cannot connect ({_first_line(e)})") from e
        try:
            yield connection
        finally:
            self.connections.give(connection)

    def exists(self) -> bool:
        return True

    def open(self) -> Registry:
        try:
            connection = self.connections.take()
        except DATABASE_ERRORS as e:
            raise RegistryError(f"{_LABEL}: cannot connect ({_first_line(e)})") from e
        return Registry(
            connection,
            _LABEL,
            release=self.connections.give,
            on_change=self._changed,
            write_lock=_REGISTRY_LOCK,
        )

    def _changed(self, connection: Any, what: str, now: datetime) -> None:
        """In the registry's write transaction: a revocation republishes the CRL."""
        if what == "revocations":
            ca = _read_ca(connection)
            if ca is None:
                raise RegistryError(f"{_LABEL}: no CA to sign the CRL with")
            _store_crl(connection, _build_crl(connection, ca, now), now)
        bump(connection, what)

    def state(self, topic: str) -> object:
        with self._connection() as connection:
            try:
                row = connection.execute(
                    "SELECT version FROM versions WHERE topic = ?", (topic,)
                ).fetchone()
            except DATABASE_ERRORS as e:
                raise RegistryError(f"{_LABEL}: {_first_line(e)}") from e
        return None if row is None else int(row[0])

    def load_ca(self) -> CertificateAuthority:
        with self._connection() as connection:
            try:
                ca = _read_ca(connection)
            except DATABASE_ERRORS as e:
                raise PKIError(f"{_LABEL}: cannot read the CA ({_first_line(e)})") from e
        if ca is None:
            raise PKIError(
                f"{_LABEL}: no CA yet (it is created by 'rail init' or on first 'rail certs"
                " issue' or start)"
            )
        return ca

    def load_or_create_ca(self, hostname: str, now: datetime) -> tuple[CertificateAuthority, bool]:
        with self._connection() as connection:
            try:
                connection.execute("BEGIN")
                try:
                    connection.execute(_REGISTRY_LOCK)
                    ca = _read_ca(connection)
                    created = ca is None
                    if ca is None:
                        local = self._local_ca()
                        ca = local or create_ca(f"Rail CA {hostname}"[:64], now)
                        stamp = now.timestamp()
                        _put(connection, _CA_KEY, private_key_pem(ca.private_key), stamp)
                        _put(connection, _CA_CERT, certificate_pem(ca.certificate), stamp)
                        if local is not None:  # its registry with it, in this transaction
                            self._copy_local(connection, now)
                    connection.execute("COMMIT")
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
            except DATABASE_ERRORS as e:
                raise PKIError(f"{_LABEL}: cannot read or create the CA ({_first_line(e)})") from e
        return ca, created

    def import_local(self, now: datetime) -> int:
        """Copy a single node's registry (``data_dir/registry.sqlite3``: certificates with
        their revocations, event subscriptions, rotated webhook secrets) into the shared
        one if that is still empty: the move to PostgreSQL keeps every certificate known
        and every revocation in force. Returns the number of certificates copied. (Taking
        over a single node's CA does this too, in the same transaction.)"""
        with self.open() as shared, shared.writing("certificates", now) as connection:
            return self._copy_local(connection, now)

    def _copy_local(self, connection: Any, now: datetime) -> int:
        """The copy, in the caller's transaction under the registry's lock."""
        if self._data_dir is None or not registry_path(self._data_dir).exists():
            return 0
        if connection.execute("SELECT 1 FROM certificates LIMIT 1").fetchone() is not None:
            return 0
        with Registry.open(registry_path(self._data_dir)) as local:
            records = local.list_all()
            events = local.all_events()
            with local.reading() as reading:
                secrets = (
                    reading.execute(
                        "SELECT client, created_at, secret, retires_at FROM webhook_secrets"
                    ).fetchall()
                    if _has_table(reading, "webhook_secrets")
                    else []
                )
        for record in records:
            _insert_record(connection, record)
        for settings in events:
            write_client_events(connection, settings, _format(now))
        for client, created_at, secret, retires_at in secrets:
            connection.execute(
                "INSERT INTO webhook_secrets (client, created_at, secret, retires_at)"
                " VALUES (?, ?, ?, ?)",
                (client, created_at, None if secret is None else bytes(secret), retires_at),
            )
        if records:
            for topic in ("certificates", "client_events", "webhook_secrets"):
                bump(connection, topic)
        return len(records)

    def _local_ca(self) -> CertificateAuthority | None:
        """The CA of a single-node Rail moving to PostgreSQL (``data_dir/ca``), if any."""
        if self._data_dir is None:
            return None
        if not (ca_cert_path(self._data_dir).exists() and ca_key_path(self._data_dir).exists()):
            return None
        return load_ca(self._data_dir)

    def publish_crl(self, ca: CertificateAuthority, now: datetime) -> None:
        with self._connection() as connection:
            try:
                connection.execute("BEGIN")
                try:
                    connection.execute(_REGISTRY_LOCK)
                    _store_crl(connection, _build_crl(connection, ca, now), now)
                    bump(connection, "revocations")
                    connection.execute("COMMIT")
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
            except DATABASE_ERRORS as e:
                raise PKIError(f"{_LABEL}: cannot publish the CRL ({_first_line(e)})") from e

    def current_crl(
        self, ca: CertificateAuthority, now: datetime
    ) -> x509.CertificateRevocationList:
        with self._connection() as connection:
            try:
                return _build_crl(connection, ca, now)
            except DATABASE_ERRORS as e:
                raise PKIError(f"{_LABEL}: cannot read the revocations ({_first_line(e)})") from e

    def crl(self) -> CRLSource:
        return SharedCRL(self.connections)

    def secret(self, name: str, make: Callable[[], bytes], now: float) -> bytes:
        """The secret stored as ``name``, stored first (``make()``) if there is none: the
        first node's wins, so every node keys its tokens alike (the console's CSRF)."""
        with self._connection() as connection:
            try:
                connection.execute(
                    "INSERT INTO blobs (name, data, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO NOTHING",
                    (name, make(), now),
                )
                stored = _get(connection, name)
            except DATABASE_ERRORS as e:
                raise PKIError(f"{_LABEL}: cannot read the secret {name} ({_first_line(e)})") from e
        assert stored is not None
        return stored


class SharedCRL:
    """The published CRL in the shared database, for :class:`Revocations`."""

    def __init__(self, connections: Connections) -> None:
        self._connections = connections

    def __str__(self) -> str:
        return f"{_CRL} in {_LABEL}"

    def _query(self, sql: str, what: str) -> Any:
        try:
            connection = self._connections.take()
        except DATABASE_ERRORS as e:
            raise OSError(f"cannot connect ({_first_line(e)})") from e
        try:
            return connection.execute(sql, (what,)).fetchone()
        except DATABASE_ERRORS as e:
            raise OSError(_first_line(e)) from e
        finally:
            self._connections.give(connection)

    def signature(self) -> object:
        row = self._query("SELECT version FROM versions WHERE topic = ?", "revocations")
        if row is None:
            raise FileNotFoundError(f"no CRL published yet in {_LABEL}")
        return int(row[0])

    def read_bytes(self) -> bytes:
        row = self._query("SELECT data FROM blobs WHERE name = ?", _CRL)
        if row is None:
            raise FileNotFoundError(f"no CRL published yet in {_LABEL}")
        return bytes(row[0])


def _has_table(connection: Any, name: str) -> bool:
    row = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def _insert_record(connection: Any, record: CertificateRecord) -> None:
    connection.execute(
        "INSERT INTO certificates (serial, name, senders, webhook, key_type, not_before,"
        " not_after, issued_at, revoked_at, fingerprint_sha256, pem, role)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            format(record.serial, "x"),
            record.name,
            json.dumps(list(record.senders)),
            record.webhook,
            record.key_type,
            _format(record.not_before),
            _format(record.not_after),
            _format(record.issued_at),
            None if record.revoked_at is None else _format(record.revoked_at),
            record.fingerprint_sha256,
            record.pem,
            record.role,
        ),
    )


def _format(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _get(connection: Any, name: str) -> bytes | None:
    row = connection.execute("SELECT data FROM blobs WHERE name = ?", (name,)).fetchone()
    return None if row is None else bytes(row[0])


def _put(connection: Any, name: str, data: bytes, stamp: float) -> None:
    connection.execute(
        "INSERT INTO blobs (name, data, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
        (name, data, stamp),
    )


def _read_ca(connection: Any) -> CertificateAuthority | None:
    cert_pem, key_pem = _get(connection, _CA_CERT), _get(connection, _CA_KEY)
    if cert_pem is None or key_pem is None:
        return None
    certificate = x509.load_pem_x509_certificate(cert_pem)
    key = load_private_key_pem(key_pem)
    if public_key_der(key.public_key()) != public_key_der(certificate.public_key()):
        raise PKIError(f"{_LABEL}: the CA key does not match the CA certificate")
    return CertificateAuthority(certificate=certificate, private_key=key)


def _build_crl(
    connection: Any, ca: CertificateAuthority, now: datetime
) -> x509.CertificateRevocationList:
    """The CRL of every revocation, numbered above the published one (servers refuse a
    lower number as a replay), valid until the CA expires (as the file's is)."""
    rows = connection.execute(
        "SELECT serial, revoked_at FROM certificates WHERE revoked_at IS NOT NULL"
        " ORDER BY revoked_at, rowid"
    ).fetchall()
    revoked = [(int(serial, 16), _parse(at)) for serial, at in rows]
    published = _get(connection, _CRL)
    previous = crl_number(parse_crl(published)) if published is not None else -1
    number = max(previous + 1, int(now.timestamp()))
    until_ca_expiry: timedelta = ca.certificate.not_valid_after_utc - now
    return build_crl(ca, revoked, now, next_update=until_ca_expiry, crl_number=number)


def _store_crl(connection: Any, crl: x509.CertificateRevocationList, now: datetime) -> None:
    _put(connection, _CRL, crl_pem(crl), now.timestamp())


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def registry_source(config: Config) -> RegistrySource:
    """Where ``config``'s PKI state lives: the shared database with ``storage.backend:
    postgresql``, else the files under ``data_dir``."""
    if config.storage.backend == "postgresql":
        assert config.storage.dsn is not None  # the config's own check
        key = (os.getpid(), config.storage.dsn, config.data_dir)
        with _SOURCES_LOCK:
            source = _SOURCES.get(key)
            if source is None:
                source = _SOURCES[key] = SharedSource(config.storage.dsn, data_dir=config.data_dir)
        return source
    return FileSource(config.data_dir)


_SOURCES: dict[tuple[int, str, Path], SharedSource] = {}
"""One source (and so one set of idle connections) per database in a process; keyed by
process id too, since a forked worker must not use its parent's connections."""
_SOURCES_LOCK = threading.Lock()


def export_ca_certificate(data_dir: Path, ca: CertificateAuthority) -> None:
    """Write the shared CA's certificate to ``data_dir/ca/ca.crt`` when it is not there
    yet (a copy of public data, for ``rail queue`` and the operator's clients); a copy
    that differs is an error: this node was set up with another CA."""
    path = ca_cert_path(data_dir)
    pem = certificate_pem(ca.certificate)
    try:
        existing = path.read_bytes()
    except FileNotFoundError:
        existing = None
    except OSError as e:
        raise PKIError(f"{path}: cannot read ({e.strerror})") from e
    if existing == pem:
        return
    if existing is not None:
        try:
            other = x509.load_pem_x509_certificate(existing)
        except ValueError:
            other = None
        if other is None or public_key_der(other.public_key()) != public_key_der(
            ca.certificate.public_key()
        ):
            raise PKIError(
                f"{path}: not the CA of the shared database; this node's data_dir belongs"
                " to another installation (move it away, or import that CA first)"
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_file_atomic(path, pem, CERTIFICATE_MODE)
    except OSError as e:
        raise PKIError(f"{path}: cannot write ({e.strerror})") from e
