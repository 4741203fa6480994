"""The SRS secret under data_dir: made once, private, kept."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.forward.secret import SECRET_FILE, SRSSecretError, load_secret


class SecretTests(SynchronousTestCase):
    def test_created_private_and_kept(self) -> None:
        """The first load makes a 0600 file of 32 random bytes; later loads read it."""
        directory = Path(self.mktemp())
        directory.mkdir()
        first = load_secret(directory)
        self.assertEqual(len(first), 32)
        mode = stat.S_IMODE((directory / SECRET_FILE).stat().st_mode)
        self.assertEqual(mode, 0o600)
        self.assertEqual(load_secret(directory), first)

    def test_unusable_refused(self) -> None:
        """A file that is not a long enough hex secret stops the start, named."""
        directory = Path(self.mktemp())
        directory.mkdir()
        for text in ("not hex\n", "abcd\n"):
            (directory / SECRET_FILE).write_text(text)
            with self.assertRaises(SRSSecretError) as caught:
                load_secret(directory)
            self.assertIn(SECRET_FILE, str(caught.exception))

    def test_failed_write_leaves_no_file(self) -> None:
        """A write that fails (a full disk) is a named SRSSecretError and leaves no
        ``srs.key`` behind, so the next start makes the secret afresh instead of being
        stopped by an empty file."""
        directory = Path(self.mktemp())
        directory.mkdir()

        def full(fd: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        self.patch(os, "fsync", full)
        with self.assertRaises(SRSSecretError) as caught:
            load_secret(directory)
        self.assertIn(SECRET_FILE, str(caught.exception))
        self.assertEqual(list(directory.iterdir()), [])

    def test_missing_directory_named(self) -> None:
        """A data directory that cannot hold the file is a named SRSSecretError (one
        line at start-up), not a traceback."""
        with self.assertRaises(SRSSecretError) as caught:
            load_secret(Path(self.mktemp()))
        self.assertIn(SECRET_FILE, str(caught.exception))
