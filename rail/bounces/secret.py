"""The VERP secret: 32 random bytes under ``data_dir/bounces/verp.key``.

Created on first use (0600, written atomically, never replaced), so the return paths of
mail sent before a restart still verify when their bounces come back days later.
Synchronous on purpose, like :mod:`rail.webhooks.key`: called at start-up, before the
reactor runs, never on it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from twisted.logger import Logger

from rail.bounces.verp import ReturnPaths
from rail.config.schema import Config
from rail.diskfull import is_disk_full
from rail.pki.files import KEY_MODE, PKIError, directory_lock, write_file_atomic

__all__ = ["load_or_create_secret", "return_paths", "secret_path"]

_log = Logger()

_DIRECTORY_MODE = 0o700
_SIZE = 32


def secret_path(data_dir: Path) -> Path:
    return data_dir / "bounces" / "verp.key"


def load_or_create_secret(data_dir: Path) -> bytes:
    """The secret, created on first use; an existing one is never replaced."""
    path = secret_path(data_dir)
    directory = path.parent
    try:
        if not directory.is_dir():
            directory.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
            os.chmod(directory, _DIRECTORY_MODE)
    except OSError as e:
        raise PKIError(f"{directory}: cannot create directory ({e.strerror})") from e
    with directory_lock(directory):
        if not path.exists():
            write_file_atomic(path, secrets.token_bytes(_SIZE), KEY_MODE, replace=False)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise PKIError(f"{path}: cannot read ({e.strerror})") from e
    if len(data) < 16:
        raise PKIError(f"{path}: a VERP secret holds at least 16 bytes, this one {len(data)}")
    return data


def return_paths(config: Config) -> ReturnPaths | None:
    """The return paths of ``config`` (``bounces``), or None when they are off; the secret
    is read or made now (at start-up). On a full disk where none was saved yet, a secret
    kept in memory is used: return paths of that run do not verify after a restart."""
    if not config.bounces.enabled:
        return None
    try:
        secret = load_or_create_secret(config.data_dir)
    except PKIError as error:
        if not is_disk_full(error):
            raise
        _log.warn(
            "disk full: VERP secret not saved ({error}); bounces to mail sent before the"
            " next start will not be recognised",
            error=str(error),
        )
        secret = secrets.token_bytes(_SIZE)
    return ReturnPaths(secret, config.bounces.domain)
