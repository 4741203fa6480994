"""Recognising "no space left" among the errors start-up meets."""

from __future__ import annotations

import errno
import sqlite3

from twisted.trial.unittest import SynchronousTestCase

from rail.diskfull import is_disk_full
from rail.pki.files import PKIError


def _sqlite_error(code: int) -> sqlite3.Error:
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    return error


class DiskFullTests(SynchronousTestCase):
    def test_os_errors(self) -> None:
        """ENOSPC and EDQUOT are a full disk; EACCES is not."""
        self.assertTrue(is_disk_full(OSError(errno.ENOSPC, "No space left on device")))
        self.assertTrue(is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded")))
        self.assertFalse(is_disk_full(OSError(errno.EACCES, "Permission denied")))
        self.assertFalse(is_disk_full(None))

    def test_sqlite_errors(self) -> None:
        """SQLITE_FULL and SQLITE_IOERR_SHMSIZE (an I/O error in its low byte) are a full
        disk; a corrupt database is not."""
        self.assertTrue(is_disk_full(_sqlite_error(13)))
        self.assertTrue(is_disk_full(_sqlite_error(4874)))
        self.assertFalse(is_disk_full(_sqlite_error(11)))

    def test_wrapped(self) -> None:
        """A PKI error raised from ENOSPC counts; one raised from a bad file does not."""
        try:
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError as e:
                raise PKIError("crl.pem: cannot write (No space left on device)") from e
        except PKIError as wrapped:
            self.assertTrue(is_disk_full(wrapped))
        try:
            try:
                raise ValueError("bad PEM")
            except ValueError as e:
                raise PKIError("crl.pem: bad PEM") from e
        except PKIError as wrapped:
            self.assertFalse(is_disk_full(wrapped))
