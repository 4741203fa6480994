"""The CRL-backed revocation cache the TLS layer consults on every connection."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rail.pki.crl import build_crl, crl_number, crl_pem, parse_crl
from rail.pki.files import PKIError, crl_path, load_or_create_ca, write_file_atomic
from rail.pki.operations import publish_crl
from rail.pki.revocations import Revocations
from tests.pki.helpers import NOW, make_ca


class RevocationsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = make_ca()
        self.path = Path(self.mktemp())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.stats = 0

        def counting_stat(path: Path) -> os.stat_result:
            self.stats += 1
            return os.stat(path)

        self.revocations = Revocations(self.path, self.ca.certificate, stat=counting_stat)

    def publish(self, *serials: int, ca: object = None) -> None:
        crl = build_crl(ca or self.ca, [(s, NOW) for s in serials], NOW)  # type: ignore[arg-type]
        write_file_atomic(self.path, crl_pem(crl), 0o644)

    def test_load_and_change(self) -> None:
        """A replaced CRL file is picked up by the next current() call."""
        self.publish(1)
        self.revocations.load()
        self.assertEqual(self.revocations.current(), frozenset({1}))
        generation = self.revocations.generation
        self.publish(1, 2)
        self.assertEqual(self.revocations.current(), frozenset({1, 2}))
        self.assertEqual(self.revocations.generation, generation + 1)
        self.assertEqual({r.serial_number for r in self.revocations.crl}, {1, 2})

    def test_unchanged_file_not_reread(self) -> None:
        """Without a change a call costs one stat and keeps the same generation."""
        self.publish(1)
        self.revocations.load()
        generation = self.revocations.generation
        before = self.stats
        for _ in range(3):
            self.revocations.current()
        self.assertEqual(self.stats - before, 3)
        self.assertEqual(self.revocations.generation, generation)

    def test_missing_at_start(self) -> None:
        """A missing CRL at start-up is a PKIError naming the file."""
        with self.assertRaises(PKIError) as raised:
            self.revocations.load()
        self.assertIn(str(self.path), str(raised.exception))

    def test_foreign_crl_at_start(self) -> None:
        """A CRL signed by another CA is refused at start-up."""
        self.publish(1, ca=make_ca("Intruder"))
        self.assertRaises(PKIError, self.revocations.load)

    def test_damaged_later_keeps_previous(self) -> None:
        """A CRL damaged while running keeps the last good set and logs an error."""
        self.publish(7)
        self.revocations.load()
        write_file_atomic(self.path, b"garbage", 0o644)
        with capturedLogs() as events:
            self.assertEqual(self.revocations.current(), frozenset({7}))
        self.assertTrue(any(e["log_level"] is LogLevel.error for e in events))
        self.publish(7, 8)
        self.assertEqual(self.revocations.current(), frozenset({7, 8}))

    def test_deleted_later_keeps_previous(self) -> None:
        """A CRL deleted while running keeps the last good set."""
        self.publish(3)
        self.revocations.load()
        self.path.unlink()
        with capturedLogs():
            self.assertEqual(self.revocations.current(), frozenset({3}))


class NextUpdateTests(SynchronousTestCase):
    def test_published_crl_valid_until_ca_expiry(self) -> None:
        """publish_crl makes a CRL whose nextUpdate is the CA's expiry, not a week."""
        data = Path(self.mktemp())
        ca, _ = load_or_create_ca(data, "rail.test", NOW)
        publish_crl(data, ca, NOW)
        crl = x509.load_pem_x509_crl(crl_path(data).read_bytes())
        self.assertEqual(crl.next_update_utc, ca.certificate.not_valid_after_utc)
        self.assertGreater(crl.next_update_utc - NOW, timedelta(days=3000))


class ReplayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = make_ca()
        self.path = Path(self.mktemp())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.revocations = Revocations(self.path, self.ca.certificate)

    def write(self, number: int, *serials: int) -> None:
        crl = build_crl(self.ca, [(s, NOW) for s in serials], NOW, crl_number=number)
        write_file_atomic(self.path, crl_pem(crl), 0o644)

    def test_older_crl_is_not_loaded(self) -> None:
        """Putting back an older signed CRL does not un-revoke anything."""
        self.write(10)
        self.revocations.load()
        self.write(11, 5)
        self.assertEqual(self.revocations.current(), frozenset({5}))
        self.write(10)
        with capturedLogs() as events:
            self.assertEqual(self.revocations.current(), frozenset({5}))
        self.assertTrue(any(e["log_level"] is LogLevel.error for e in events))

    def test_publish_numbers_increase_when_clock_goes_back(self) -> None:
        """publish_crl numbers each CRL above the last even if the clock went backwards."""
        data = Path(self.mktemp())
        ca, _ = load_or_create_ca(data, "rail.test", NOW)
        publish_crl(data, ca, NOW)
        first = crl_number(parse_crl(crl_path(data).read_bytes()))
        publish_crl(data, ca, NOW - timedelta(hours=1))
        second = crl_number(parse_crl(crl_path(data).read_bytes()))
        self.assertEqual(second, first + 1)

    def test_adopted_crl_wins_over_stale_file(self) -> None:
        """A CRL built in memory at start-up (the file could not be rewritten: full disk)
        is served instead of the stale file, which does not replace it even when touched;
        a newer file (``rail certs revoke`` once there is room) does."""
        self.write(10)
        self.revocations.adopt(build_crl(self.ca, [(7, NOW)], NOW, crl_number=11))
        self.assertEqual(self.revocations.current(), frozenset({7}))
        self.write(10)
        with capturedLogs():
            self.assertEqual(self.revocations.current(), frozenset({7}))
        self.write(12, 7, 8)
        self.assertEqual(self.revocations.current(), frozenset({7, 8}))
