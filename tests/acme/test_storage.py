"""The ACME account key and certificate files under data_dir/acme."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.acme.storage import (
    account_key_path,
    load_acme_material,
    load_or_create_account_key,
    save_acme_material,
    server_pem_path,
)
from rail.pki.files import PKIError
from rail.pki.keys import private_key_pem, public_key_der
from tests.acme.helpers import DAY, NOW, at, material


def _mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


class AccountKeyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data = Path(self.mktemp())

    def test_created_once_0600(self) -> None:
        """The account key is created on first use with mode 0600 in a 0700 directory,
        and the same key is returned afterwards."""
        first = load_or_create_account_key(self.data)
        path = account_key_path(self.data)
        self.assertEqual(_mode(path), 0o600)
        self.assertEqual(_mode(path.parent), 0o700)
        second = load_or_create_account_key(self.data)
        self.assertEqual(public_key_der(first.public_key()), public_key_der(second.public_key()))

    def test_foreign_key_refused(self) -> None:
        """A damaged key file is an error naming the file, never silently replaced."""
        path = account_key_path(self.data)
        path.parent.mkdir(parents=True)
        path.write_bytes(b"junk")
        error = self.assertRaises(PKIError, load_or_create_account_key, self.data)
        self.assertTrue(str(error).startswith(str(path)))
        self.assertEqual(path.read_bytes(), b"junk")


class CertificateFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data = Path(self.mktemp())

    def test_round_trip_0600(self) -> None:
        """The chain and key are saved in one 0600 file and load back unchanged."""
        saved = material(("mail.rail.test", "mta-sts.rail.test"))
        path = save_acme_material(self.data, saved)
        self.assertEqual(path, server_pem_path(self.data))
        self.assertEqual(_mode(path), 0o600)
        loaded = load_acme_material(self.data, at(NOW))
        assert loaded is not None
        self.assertEqual(loaded.chain, saved.chain)
        self.assertEqual(private_key_pem(loaded.key), private_key_pem(saved.key))
        self.assertEqual([p.name for p in path.parent.iterdir()], ["server.pem"])

    def test_missing_is_none(self) -> None:
        """No file means no ACME certificate yet (not an error)."""
        self.assertIsNone(load_acme_material(self.data, at(NOW)))

    def test_expired_refused(self) -> None:
        """An expired certificate is refused with its expiry time."""
        save_acme_material(self.data, material(not_after=NOW - 1))
        error = self.assertRaises(PKIError, load_acme_material, self.data, at(NOW))
        self.assertIn("expired at", str(error))

    def test_mismatched_key_refused(self) -> None:
        """A key that is not the leaf's is refused."""
        one, other = material(), material()
        path = server_pem_path(self.data)
        save_acme_material(self.data, one)
        text = path.read_bytes()
        key_start = text.index(b"-----BEGIN PRIVATE KEY")
        path.write_bytes(text[:key_start] + private_key_pem(other.key))
        error = self.assertRaises(PKIError, load_acme_material, self.data, at(NOW))
        self.assertIn("does not match", str(error))

    def test_garbage_refused(self) -> None:
        """A file without a certificate is refused, naming the file."""
        path = server_pem_path(self.data)
        path.parent.mkdir(parents=True)
        path.write_bytes(b"junk")
        error = self.assertRaises(PKIError, load_acme_material, self.data, at(NOW + DAY))
        self.assertTrue(str(error).startswith(str(path)))
