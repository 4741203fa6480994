"""Whether an error means "no space left": the one failure Rail starts through.

A full data disk must not turn into a restart loop under a supervisor: start-up writes
that can wait (a DKIM key for a new domain, a CRL that says the same as the file on disk,
a renewed development certificate, the DNS serial file) are skipped with a log line when
they fail for lack of space, while any other failure still stops start-up with its
message. SQLite reports a full disk as SQLITE_FULL, or as an I/O error when it cannot
size its shared-memory file (SQLITE_IOERR_SHMSIZE and relatives).
"""

from __future__ import annotations

import errno
import sqlite3

__all__ = ["is_disk_full"]

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_IOERR = 10
_SQLITE_FULL = 13


def is_disk_full(error: BaseException | None) -> bool:
    """True if ``error``, or an error it was raised from, says the disk is full."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in _NO_SPACE:
            return True
        if isinstance(error, sqlite3.Error):
            code = getattr(error, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in (_SQLITE_FULL, _SQLITE_IOERR):
                return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False
