"""The disk reserve: space Rail sets aside so that a full disk cannot stop its bookkeeping.

Recording a delivery, opening the registry or the queue (SQLite's shared-memory and WAL
files) and writing a CRL all need a little free space. When something else fills the
disk to the last byte, that space is gone, and without it Rail could neither start nor
record what it delivers. So Rail keeps ``storage.reserve`` bytes allocated in
``data_dir/queue/reserve`` and frees them when free space falls under the reserve's size;
that room then serves the queue's bookkeeping, while new mail stays refused because free
space is under ``storage.min_free_space``. Once free space is back above
``max(min_free_space, reserve) + reserve``, the reserve is allocated again (the gap
keeps it from being freed and made again in turn).

Synchronous file work: called at start-up before the reactor runs and from the queue's
writer thread, never from the reactor thread.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Literal

__all__ = ["RESERVE_NAME", "free_bytes", "settle"]

RESERVE_NAME = "reserve"

Action = Literal["released", "created"]


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer may still use on ``directory``'s file system (the
    nearest existing ancestor's, if ``directory`` does not exist yet)."""
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


def settle(directory: Path, size: int, min_free: int, free: int | None = None) -> Action | None:
    """Free or allocate the reserve in ``directory`` according to the free space
    (``free``, measured now when not given); returns what was done.

    The reserve is made only in an existing ``directory`` (the queue's, which the store
    creates). Raises ``OSError`` only if the reserve cannot be removed; a failed
    allocation (the space went meanwhile) leaves no file behind and returns None.
    """
    path = directory / RESERVE_NAME
    present = path.exists()
    if free is None:
        free = free_bytes(directory)
    if present and (size <= 0 or free < size):
        path.unlink()
        return "released"
    if not present and size > 0 and free >= max(min_free, size) + size and directory.is_dir():
        return "created" if _allocate(directory, path, size) else None
    return None


def _allocate(directory: Path, path: Path, size: int) -> bool:
    """Allocate ``size`` bytes at ``path`` (really allocated, not sparse), atomically."""
    temporary = directory / f".{RESERVE_NAME}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink()
        return False
    return True
