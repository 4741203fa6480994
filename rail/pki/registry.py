"""The registry of issued client certificates: the source of truth for names and revocations.

SQLite under ``data_dir``, synchronous (the CLI uses it directly, the server at start-up or
from a thread). The CRL is exported from here; local domains and inbound routes are derived
from the currently valid records.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import attrs
import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from rail.diskfull import is_disk_full
from rail.pki.clientevents import (
    CLIENT_EVENTS_SCHEMA,
    ClientEvents,
    check_event_settings,
    read_client_events,
    write_client_events,
)
from rail.pki.files import PKIError, certificate_pem
from rail.pki.inspect import Role, certificate_identity, certificate_role
from rail.pki.keys import key_type_of
from rail.pki.ownership import AddressConflict, claim_conflicts

__all__ = [
    "SCHEMA_VERSION",
    "AddressConflictError",
    "CertificateRecord",
    "NothingToRevokeError",
    "Registry",
    "RegistryError",
    "UnknownClientError",
    "parse_serial",
    "registry_path",
]

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,          -- lowercase hex: serials have up to 159 bits
    name TEXT NOT NULL,
    senders TEXT NOT NULL,            -- JSON array of addresses
    webhook TEXT,
    key_type TEXT NOT NULL,
    not_before TEXT NOT NULL,         -- fixed-width UTC, so text order is time order
    not_after TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    revoked_at TEXT,
    fingerprint_sha256 TEXT NOT NULL UNIQUE,
    pem BLOB NOT NULL,
    role TEXT NOT NULL DEFAULT 'client'   -- 'client' or 'admin' (version 2)
);
CREATE INDEX certificates_by_name ON certificates (name);
"""
# Version 2 had no event settings (issue 16): 2 to 3 adds their table.
_SCHEMA += CLIENT_EVENTS_SCHEMA
# Version 1 (before admin certificates) had no role: every certificate was a client's.
_MIGRATE_1_TO_2 = "ALTER TABLE certificates ADD COLUMN role TEXT NOT NULL DEFAULT 'client'"

_DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)
"""What a failing statement raises on either engine (the registry may be SQLite under
``data_dir`` or the shared PostgreSQL database, :mod:`rail.shared.registry`)."""
_DUPLICATE_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, psycopg.IntegrityError)

_COLUMNS = (
    "serial, name, senders, webhook, key_type, not_before, not_after, issued_at,"
    " revoked_at, fingerprint_sha256, pem, role"
)
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

Status = Literal["valid", "revoked", "expired"]


_TURNS: dict[str, threading.Lock] = {}
_TURNS_LOCK = threading.Lock()


def _exclusive_turn(path: Path) -> threading.Lock:
    """The lock this process's exclusive-mode opens of ``path`` take turns on."""
    with _TURNS_LOCK:
        return _TURNS.setdefault(str(path.resolve()), threading.Lock())


class RegistryError(PKIError):
    """An operation the registry refuses; the message names the item (``--name 'x': ...``).

    A ``PKIError`` so that the CLI can report every PKI failure the same way.
    """


class UnknownClientError(RegistryError):
    """No client certificate has the name asked for."""


class NothingToRevokeError(RegistryError):
    """A revocation that finds nothing to revoke: no such certificate, or no valid one."""


class AddressConflictError(RegistryError):
    """A new certificate lists addresses other clients' valid certificates hold;
    ``problems`` has one line per address."""

    def __init__(self, conflicts: list[AddressConflict]) -> None:
        self.conflicts = conflicts
        self.problems = [
            f"--email {c.address!r}: already held by the valid certificate of"
            f" {_others(c)}; two clients could each send as it and its inbound mail"
            f" would stay with {c.owner!r}. Revoke that certificate first, or pass"
            " --allow-shared-address"
            for c in conflicts
        ]
        super().__init__("; ".join(self.problems))


def _others(conflict: AddressConflict) -> str:
    return ", ".join(
        f"{h.name!r} (serial {_format_serial(h.serial)})" for h in conflict.holders[:-1]
    )


def registry_path(data_dir: Path) -> Path:
    return data_dir / "registry.sqlite3"


def parse_serial(text: str) -> int | None:
    """A serial as operators copy it: ``0x`` prefix and ``:`` separators optional, any case.
    ``None`` if ``text`` is not hexadecimal."""
    digits = text.strip().replace(":", "").lower()
    digits = digits.removeprefix("0x")
    if not digits or any(c not in "0123456789abcdef" for c in digits):
        return None
    return int(digits, 16)


def _format_serial(serial: int) -> str:
    return format(serial, "x")


def _format_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime(_TIME_FORMAT)


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)


@attrs.frozen
class CertificateRecord:
    serial: int
    name: str
    senders: tuple[str, ...]
    webhook: str | None
    key_type: str
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    revoked_at: datetime | None
    fingerprint_sha256: str
    pem: bytes
    role: Role = "client"
    """``admin`` for ``rail certs issue --admin`` (read from the certificate's subject)."""

    def status(self, now: datetime) -> Status:
        """Revocation wins over expiry: "revoked" is the more useful thing to tell an operator
        wondering why a certificate stopped working."""
        if self.revoked_at is not None:
            return "revoked"
        if now > self.not_after:
            return "expired"
        return "valid"

    @classmethod
    def from_certificate(cls, cert: x509.Certificate, issued_at: datetime) -> CertificateRecord:
        """The record for a certificate Rail just issued."""
        client_id, senders, webhook = certificate_identity(cert)
        if client_id is None:
            raise ValueError("certificate has no common name to record it under")
        return cls(
            serial=cert.serial_number,
            name=client_id,
            senders=senders,
            webhook=webhook,
            key_type=key_type_of(cert.public_key()),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            issued_at=issued_at,
            revoked_at=None,
            fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
            pem=certificate_pem(cert),
            role=certificate_role(cert),
        )


OnChange = Callable[[Any, str, datetime], None]
"""Called inside a registry write transaction with the connection, what changed
(``certificates``, ``revocations`` or ``client_events``) and when: the shared registry
republishes the CRL and notifies the other nodes there, in the same transaction."""


@contextlib.contextmanager
def _immediate(connection: Any, lock: str | None = None) -> Iterator[None]:
    """A write transaction that takes the database lock at BEGIN, not at the first write, so
    the reads that decide the write see the state the write applies to. PostgreSQL has
    no such BEGIN: ``lock`` (an advisory lock's statement) serialises the writers there."""
    dialect = getattr(connection, "dialect", None)
    connection.execute("BEGIN IMMEDIATE" if dialect is None else dialect.begin)
    try:
        if lock is not None:
            connection.execute(lock)
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    with _immediate(connection):
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RegistryError(
                f"{path}: registry schema version {version} is newer than this Rail"
                f" understands ({SCHEMA_VERSION}); upgrade Rail"
            )
        if version == 0:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version < SCHEMA_VERSION:
            if version == 1:
                connection.execute(_MIGRATE_1_TO_2)
            if version <= 2:
                connection.execute(CLIENT_EVENTS_SCHEMA)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class _Closed:
    """Stands for a connection given back: using the registry after close() fails."""

    def execute(self, *args: object) -> Any:
        raise RegistryError("the registry is closed")

    def close(self) -> None:
        pass


def _record(row: Sequence[Any]) -> CertificateRecord:
    """A row of ``_COLUMNS``, by position (a ``sqlite3.Row`` or a psycopg tuple)."""
    (serial, name, senders, webhook, key_type, not_before, not_after, issued_at, revoked_at,
     fingerprint, pem, role) = row  # fmt: skip
    return CertificateRecord(
        serial=int(serial, 16),
        name=name,
        senders=tuple(json.loads(senders)),
        webhook=webhook,
        key_type=key_type,
        not_before=_parse_time(not_before),
        not_after=_parse_time(not_after),
        issued_at=_parse_time(issued_at),
        revoked_at=None if revoked_at is None else _parse_time(revoked_at),
        fingerprint_sha256=fingerprint,
        pem=bytes(pem),
        role="admin" if role == "admin" else "client",
    )


class Registry:
    """One connection to the registry database. Use ``Registry.open(path)``.

    The connection may be used from any thread (the server hands it to a thread pool), one
    call at a time: a lock serialises calls. Writes use ``BEGIN IMMEDIATE`` so a check and
    the write it guards cannot be interleaved with another process's.
    """

    def __init__(
        self,
        connection: Any,
        path: Path | str,
        held: threading.Lock | None = None,
        *,
        release: Callable[[Any], None] | None = None,
        on_change: OnChange | None = None,
        write_lock: str | None = None,
    ) -> None:
        """``connection`` is a ``sqlite3.Connection`` or a :class:`rail.store.pg.PGConnection`
        (the shared registry, which passes ``release`` to take the connection back
        instead of closing it, ``on_change`` and the ``write_lock`` statement)."""
        self._connection = connection
        self._path = path
        self._lock = threading.Lock()
        self._held = held  # this process's turn at an exclusive-mode registry, if one
        self._release = release
        self._on_change = on_change
        self._write_lock = write_lock

    @classmethod
    def open(cls, path: Path) -> Registry:
        """Open (creating if needed) the registry at ``path``.

        On a full disk SQLite cannot create the shared-memory file a WAL database is
        shared through, and the open fails with an I/O error; the registry is then
        opened again in exclusive locking mode, which keeps that index in memory, so it
        can still be read (writes fail for want of space as they would anyway). Another
        process waits (``busy_timeout``) until such a connection is closed; within this
        process, where several threads read the registry, SQLite would answer "database is
        locked" at once rather than wait, so such opens take turns on a lock per file.
        """
        try:
            return cls._open(path, exclusive=False)
        except RegistryError as e:
            if not path.exists() or not is_disk_full(e):
                raise
        turn = _exclusive_turn(path)
        if not turn.acquire(timeout=30.0):
            raise RegistryError(f"{path}: cannot open registry (busy in this process)")
        try:
            registry = cls._open(path, exclusive=True)
        except BaseException:
            turn.release()
            raise
        registry._held = turn
        return registry

    @classmethod
    def _open(cls, path: Path, exclusive: bool) -> Registry:
        try:
            connection = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except sqlite3.Error as e:
            raise RegistryError(f"{path}: cannot open registry ({e})") from e
        try:
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA busy_timeout = 5000")
            if exclusive:
                connection.execute("PRAGMA locking_mode = EXCLUSIVE")
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise RegistryError(f"{path}: cannot enable WAL mode (journal mode is {mode})")
            connection.execute("PRAGMA synchronous = FULL")
            _migrate(connection, path)
        except sqlite3.Error as e:
            connection.close()
            raise RegistryError(f"{path}: cannot open registry ({e})") from e
        except BaseException:
            connection.close()
            raise
        return cls(connection, path)

    def close(self) -> None:
        with self._lock:
            if self._release is not None:
                release, self._release = self._release, None
                release(self._connection)
                self._connection = _Closed()
            else:
                self._connection.close()
            held, self._held = self._held, None
        if held is not None:
            held.release()

    def __enter__(self) -> Registry:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _select(self, where: str = "", params: tuple[object, ...] = ()) -> list[CertificateRecord]:
        rows = self._connection.execute(
            f"SELECT {_COLUMNS} FROM certificates {where} ORDER BY issued_at, rowid",  # noqa: S608
            params,
        ).fetchall()
        return [_record(row) for row in rows]

    @contextlib.contextmanager
    def _read(self) -> Iterator[None]:
        with self._lock:
            try:
                yield
            except _DATABASE_ERRORS as e:
                raise RegistryError(f"{self._path}: {e}") from e

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        with self._lock:
            try:
                with _immediate(self._connection, self._write_lock):
                    yield
            except _DATABASE_ERRORS as e:
                raise RegistryError(f"{self._path}: {e}") from e

    @contextlib.contextmanager
    def writing(self, what: str, now: datetime) -> Iterator[Any]:
        """A write transaction of the registry's database for tables kept beside it
        (:mod:`rail.webhooks.secrets`): yields the connection; ``what`` names the change
        for the other nodes of a shared registry. Database errors are RegistryErrors."""
        with self._write():
            yield self._connection
            self._changed(what, now)

    @contextlib.contextmanager
    def reading(self) -> Iterator[Any]:
        """The connection, for reads of tables kept beside the registry."""
        with self._read():
            yield self._connection

    def _changed(self, what: str, now: datetime) -> None:
        if self._on_change is not None:
            self._on_change(self._connection, what, now)

    def add(
        self, record: CertificateRecord, *, allow_shared_addresses: bool = False
    ) -> list[AddressConflict]:
        """Record a newly issued certificate.

        A name may have several valid certificates (rotation: issue, deploy, revoke the
        old one); they are one client. An address that another client's valid certificate
        holds is refused with :class:`AddressConflictError` (checked in the same
        transaction as the insert, so two issuers cannot both claim it), unless
        ``allow_shared_addresses``: then the conflicts are returned for a warning.
        """
        with self._write():
            conflicts = claim_conflicts(
                record, self._select("WHERE revoked_at IS NULL"), record.issued_at
            )
            if conflicts and not allow_shared_addresses:
                raise AddressConflictError(conflicts)
            try:
                self._connection.execute(
                    f"INSERT INTO certificates ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608
                    (
                        _format_serial(record.serial),
                        record.name,
                        json.dumps(list(record.senders)),
                        record.webhook,
                        record.key_type,
                        _format_time(record.not_before),
                        _format_time(record.not_after),
                        _format_time(record.issued_at),
                        None if record.revoked_at is None else _format_time(record.revoked_at),
                        record.fingerprint_sha256,
                        record.pem,
                        record.role,
                    ),
                )
            except _DUPLICATE_ERRORS as e:
                raise RegistryError(
                    f"serial {_format_serial(record.serial)}: already recorded"
                ) from e
            self._changed("certificates", record.issued_at)
        return conflicts

    def get(self, serial: int) -> CertificateRecord | None:
        with self._read():
            records = self._select("WHERE serial = ?", (_format_serial(serial),))
        return records[0] if records else None

    def _find(self, name_or_serial: str) -> tuple[list[CertificateRecord], int | None]:
        serial = parse_serial(name_or_serial)
        if serial is None:
            return self._select("WHERE name = ?", (name_or_serial,)), None
        return (
            self._select("WHERE name = ? OR serial = ?", (name_or_serial, _format_serial(serial))),
            serial,
        )

    def find(self, name_or_serial: str) -> list[CertificateRecord]:
        """Certificates named ``name_or_serial`` and the one with that serial, if it parses as
        one (a name may look like hex, e.g. ``cafe``: both interpretations are returned)."""
        with self._read():
            return self._find(name_or_serial)[0]

    def list_all(self) -> list[CertificateRecord]:
        with self._read():
            return self._select()

    def revoke(self, name_or_serial: str, now: datetime) -> list[CertificateRecord]:
        """Revoke by serial (that certificate, even if expired) or by name (every currently
        valid certificate of that name). Returns the records as revoked."""
        with self._write():
            matches, serial = self._find(name_or_serial)
            if not matches:
                raise NothingToRevokeError(f"{name_or_serial!r}: no such certificate")
            targets = [
                record
                for record in matches
                if record.revoked_at is None
                and (record.serial == serial or record.status(now) == "valid")
            ]
            if not targets:
                if all(record.revoked_at is not None for record in matches):
                    raise NothingToRevokeError(f"{name_or_serial!r}: already revoked")
                raise NothingToRevokeError(
                    f"{name_or_serial!r}: no valid certificate to revoke (already expired;"
                    " revoke it by serial to list it in the CRL anyway)"
                )
            stamp = _format_time(now)
            for record in targets:
                self._connection.execute(
                    "UPDATE certificates SET revoked_at = ? WHERE serial = ?",
                    (stamp, _format_serial(record.serial)),
                )
            self._changed("revocations", now)
            revoked_at = _parse_time(stamp)
            return [attrs.evolve(record, revoked_at=revoked_at) for record in targets]

    def revoked(self) -> list[tuple[int, datetime]]:
        """``(serial, revoked_at)`` of every revoked certificate, for ``build_crl``."""
        with self._read():
            rows = self._connection.execute(
                "SELECT serial, revoked_at FROM certificates WHERE revoked_at IS NOT NULL"
                " ORDER BY revoked_at, rowid"
            ).fetchall()
        return [(int(row[0], 16), _parse_time(row[1])) for row in rows]

    def valid_records(self, now: datetime) -> list[CertificateRecord]:
        with self._read():
            return [record for record in self._select() if record.status(now) == "valid"]

    def set_events(
        self,
        name: str,
        types: Iterable[str],
        url: str | None,
        now: datetime,
        *,
        allow_http_loopback: bool,
        labels: tuple[str, str] = ("--events", "--events-url"),
    ) -> ClientEvents:
        """Record which events client ``name`` gets and where (see
        :mod:`rail.pki.clientevents`); no types clears them. The client must have a
        certificate; without ``url``, its newest valid certificate (or newest at all) must
        carry a webhook URL. Raises :class:`RegistryError` for an unknown client and
        :class:`~rail.pki.clientevents.EventSettingsError` (naming ``labels``) for
        settings that do not make sense."""
        with self._write():
            records = self._client_records(name)
            valid = [r for r in records if r.status(now) == "valid"]
            picked = check_event_settings(
                types,
                url,
                webhook=(valid or records)[-1].webhook,
                allow_http_loopback=allow_http_loopback,
                types_label=labels[0],
                url_label=labels[1],
            )
            settings = ClientEvents(name, picked, url if picked else None)
            write_client_events(self._connection, settings, _format_time(now))
            self._changed("client_events", now)
        return settings

    def events_of(self, name: str) -> ClientEvents:
        """Client ``name``'s event settings (no types if it picked none); raises
        :class:`RegistryError` if no client certificate has that name."""
        with self._read():
            self._client_records(name)
            found = read_client_events(self._connection, name)
        return found[0] if found else ClientEvents(name)

    def all_events(self) -> list[ClientEvents]:
        """Every client's event settings that picks any type, by name."""
        with self._read():
            return read_client_events(self._connection)

    def _client_records(self, name: str) -> list[CertificateRecord]:
        records = [r for r in self._select("WHERE name = ?", (name,)) if r.role == "client"]
        if not records:
            raise UnknownClientError(f"{name!r}: no client certificate has this name")
        return records
