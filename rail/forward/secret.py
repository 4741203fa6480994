"""The SRS secret: 32 random bytes in ``data_dir/srs.key`` (mode 0600), made on first use.

Read once at start-up, before the reactor runs (never on the reactor thread). Losing the
file only means bounces to addresses rewritten before are refused; changing it by hand
has the same effect, so it is created exclusively and never overwritten.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from rail.pki.files import KEY_MODE, write_file_atomic

__all__ = ["SECRET_FILE", "SRSSecretError", "load_secret"]

SECRET_FILE = "srs.key"  # noqa: S105  # a file name, not a secret
_SIZE = 32


class SRSSecretError(Exception):
    """The secret file exists but cannot be used, or cannot be made (the argument says
    why)."""


def load_secret(data_dir: Path) -> bytes:
    """The secret under ``data_dir``, created (fsynced, 0600) when absent. It is written
    atomically: a crash or a full disk while it is made leaves no file, never an empty or
    torn one that would stop every later start."""
    path = data_dir / SECRET_FILE
    try:
        if not path.exists():
            try:
                data = secrets.token_hex(_SIZE).encode("ascii") + b"\n"
                write_file_atomic(path, data, KEY_MODE, replace=False)
            except FileExistsError:
                pass  # made meanwhile by another start: that one is the secret
        text = path.read_text("ascii").strip()
    except (OSError, UnicodeError) as e:
        raise SRSSecretError(f"{path}: cannot be made or read ({e})") from None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise SRSSecretError(f"{path}: not a hex secret") from None
    if len(secret) < 16:
        raise SRSSecretError(f"{path}: secret shorter than 16 bytes")
    return secret
