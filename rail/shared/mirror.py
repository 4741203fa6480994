"""Files under ``data_dir`` that every node must hold alike, kept in the shared database.

Some state is made by code that writes files and reads them back: the webhook signing key
(``webhook/ed25519.key``), the VERP secret (``bounces/verp.key``), the SRS secret
(``srs.key``), the DKIM keys with their generations (``dkim/``) and the ACME account key
and certificate (``acme/``, :mod:`rail.shared.acme`). With the shared
database each such file is a row of ``rail_shared.blobs`` (named ``file:`` + its path
under ``data_dir``) and the local file is a copy of it: :func:`synced` copies the rows
to the files, lets the usual code make what is missing, and stores what it made, all under
one advisory lock, so two nodes starting at once cannot each make their own key: the
second finds the first one's rows and uses them. A node's data directory therefore holds
nothing the database does not (it may be empty at start).

A change to one of these files (``rail dkim rotate``, a new ACME certificate) bumps a
topic (``files``, ``acme``) and notifies the other nodes, which copy the rows again
(:func:`pull`) and reload.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rail.pki.files import PKIError, write_file_atomic
from rail.shared.registry import SharedSource
from rail.shared.schema import bump
from rail.store.db import DATABASE_ERRORS

__all__ = ["SHARED_FILES", "MirrorError", "pull", "push", "synced"]

T = TypeVar("T")

SHARED_FILES = ("webhook/ed25519.key", "bounces/verp.key", "srs.key", "dkim/", "acme/")
"""What is mirrored: files, and directories (ending in ``/``) with everything in them."""

_LOCK = "SELECT pg_advisory_xact_lock(126939302182915)"
_PREFIX = "file:"
_FILE_MODE = 0o600
_DIRECTORY_MODE = 0o700


class MirrorError(PKIError):
    """The shared files cannot be read or written; the message says which (a PKIError:
    start-up and the CLI report it as one line)."""


def synced(
    source: SharedSource,
    data_dir: Path,
    work: Callable[[], T],
    *,
    paths: Sequence[str] = SHARED_FILES,
    now: float,
    topic: str = "files",
) -> T:
    """Under the mirror's lock: copy ``paths`` from the database into ``data_dir``, run
    ``work()`` (which reads, makes or changes those files), then store what changed and
    notify the other nodes if anything did. Returns what ``work`` returned."""
    try:
        connection = source.connections.take()
    except DATABASE_ERRORS as e:
        raise MirrorError(f"the shared database: cannot connect ({_line(e)})") from e
    try:
        connection.execute("BEGIN")
        try:
            connection.execute(_LOCK)
            stored = _pull(connection, data_dir, paths)
            result = work()
            if _push(connection, data_dir, paths, stored, now):
                bump(connection, topic)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    except DATABASE_ERRORS as e:
        raise MirrorError(
            f"the shared database: cannot sync {', '.join(paths)} ({_line(e)})"
        ) from e
    finally:
        source.connections.give(connection)
    return result


def push(
    source: SharedSource, data_dir: Path, paths: Sequence[str], *, now: float, topic: str
) -> bool:
    """Store the files of ``paths`` that differ from their rows (this node made them: a
    new ACME certificate) and notify ``topic``; whether any did."""
    try:
        connection = source.connections.take()
    except DATABASE_ERRORS as e:
        raise MirrorError(f"the shared database: cannot connect ({_line(e)})") from e
    try:
        connection.execute("BEGIN")
        try:
            connection.execute(_LOCK)
            where, params = _selects(paths)
            rows = connection.execute(
                f"SELECT name, data FROM blobs WHERE {where}",  # noqa: S608
                params,
            ).fetchall()
            stored = {str(name).removeprefix(_PREFIX): bytes(data) for name, data in rows}
            changed = _push(connection, data_dir, paths, stored, now)
            if changed:
                bump(connection, topic)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    except DATABASE_ERRORS as e:
        what = ", ".join(paths)
        raise MirrorError(f"the shared database: cannot store {what} ({_line(e)})") from e
    finally:
        source.connections.give(connection)
    return changed


def pull(source: SharedSource, data_dir: Path, paths: Sequence[str] = SHARED_FILES) -> int:
    """Copy ``paths`` from the database into ``data_dir`` (a running node, told that
    another changed them); the number of files written."""
    try:
        connection = source.connections.take()
    except DATABASE_ERRORS as e:
        raise MirrorError(f"the shared database: cannot connect ({_line(e)})") from e
    try:
        before = _local(data_dir, paths)
        stored = _pull(connection, data_dir, paths)
    except DATABASE_ERRORS as e:
        raise MirrorError(
            f"the shared database: cannot read {', '.join(paths)} ({_line(e)})"
        ) from e
    finally:
        source.connections.give(connection)
    return sum(1 for name, data in stored.items() if before.get(name) != data)


def _selects(paths: Sequence[str]) -> tuple[str, list[str]]:
    clauses, params = [], []
    for path in paths:
        if path.endswith("/"):
            clauses.append("name LIKE ?")
            params.append(_PREFIX + path.replace("%", r"\%").replace("_", r"\_") + "%")
        else:
            clauses.append("name = ?")
            params.append(_PREFIX + path)
    return " OR ".join(clauses), params


def _pull(connection: Any, data_dir: Path, paths: Sequence[str]) -> dict[str, bytes]:
    """Write every stored file that differs from (or is missing in) ``data_dir``; the
    stored files by path."""
    where, params = _selects(paths)
    rows = connection.execute(f"SELECT name, data FROM blobs WHERE {where}", params).fetchall()  # noqa: S608
    stored = {str(name).removeprefix(_PREFIX): bytes(data) for name, data in rows}
    local = _local(data_dir, paths)
    for name, data in stored.items():
        if local.get(name) != data:
            _write(data_dir, name, data)
    return stored


def _push(
    connection: Any, data_dir: Path, paths: Sequence[str], stored: dict[str, bytes], now: float
) -> bool:
    """Store every local file that differs from its row; whether any did."""
    changed = False
    for name, data in _local(data_dir, paths).items():
        if stored.get(name) == data:
            continue
        connection.execute(
            "INSERT INTO blobs (name, data, updated_at) VALUES (?, ?, ?) ON CONFLICT (name)"
            " DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
            (_PREFIX + name, data, now),
        )
        changed = True
    return changed


def _local(data_dir: Path, paths: Iterable[str]) -> dict[str, bytes]:
    """The files of ``paths`` under ``data_dir`` by relative path (lock and temporary
    files, whose names start with a dot, are not state)."""
    found: dict[str, bytes] = {}
    for path in paths:
        target = data_dir / path
        if path.endswith("/"):
            if not target.is_dir():
                continue
            for root, directories, files in os.walk(target):
                directories[:] = [d for d in directories if not d.startswith(".")]
                for file in files:
                    if not file.startswith("."):
                        full = Path(root) / file
                        found[full.relative_to(data_dir).as_posix()] = _read(full)
        elif target.is_file():
            found[path] = _read(target)
    return found


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise MirrorError(f"{path}: cannot read ({e.strerror})") from e


def _write(data_dir: Path, name: str, data: bytes) -> None:
    target = data_dir / name
    if ".." in Path(name).parts or Path(name).is_absolute():
        raise MirrorError(f"the shared database: refusing the file name {name!r}")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        for parent in reversed(target.relative_to(data_dir).parents[:-1]):
            directory = data_dir / parent
            if not directory.is_dir():
                directory.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
        write_file_atomic(target, data, _FILE_MODE)
    except OSError as e:
        raise MirrorError(f"{target}: cannot write ({e.strerror})") from e


def _line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
