"""The SRS secret under data_dir: made once, private, kept."""

from __future__ import annotations

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
