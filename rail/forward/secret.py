"""The SRS secret: 32 random bytes in ``data_dir/srs.key`` (mode 0600), made on first use.

Read once at start-up, before the reactor runs (never on the reactor thread). Losing the
file only means bounces to addresses rewritten before are refused; changing it by hand
has the same effect, so it is created exclusively and never overwritten.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["SECRET_FILE", "SRSSecretError", "load_secret"]

SECRET_FILE = "srs.key"  # noqa: S105  # a file name, not a secret
_SIZE = 32


class SRSSecretError(Exception):
    """The secret file exists but cannot be used (the argument says why)."""


def load_secret(data_dir: Path) -> bytes:
    """The secret under ``data_dir``, created (fsynced, 0600) when absent."""
    path = data_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        try:
            os.write(fd, secrets.token_hex(_SIZE).encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
    text = path.read_text("ascii").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise SRSSecretError(f"{path}: not a hex secret") from None
    if len(secret) < 16:
        raise SRSSecretError(f"{path}: secret shorter than 16 bytes")
    return secret
