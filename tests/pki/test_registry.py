"""Tests for rail.pki.registry: the SQLite record of issued certificates."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import attrs
from twisted.trial.unittest import SynchronousTestCase

from rail.pki.crl import build_crl, revoked_serials
from rail.pki.registry import (
    SCHEMA_VERSION,
    AddressConflictError,
    CertificateRecord,
    Registry,
    RegistryError,
    parse_serial,
    registry_path,
)

from .helpers import DEFAULT_EMAILS, NOW, issue_client, make_ca, pem


class RegistryTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.data_dir = Path(self.mktemp())
        self.data_dir.mkdir()
        self.path = registry_path(self.data_dir)
        self.registry = Registry.open(self.path)
        self.addCleanup(self.registry.close)
        self.ca = make_ca()

    def reopen(self) -> Registry:
        """Another connection to the same registry (tests/shared runs these on PostgreSQL)."""
        return Registry.open(self.path)

    def issue(
        self,
        name: str = "myapp",
        now: datetime = NOW,
        validity: timedelta = timedelta(days=90),
        emails: tuple[str, ...] | None = None,
        registry: Registry | None = None,
        shared: bool = False,
    ) -> CertificateRecord:
        """Issue a certificate and record it, as 'rail certs issue' does. Without
        ``emails``, 'myapp' gets DEFAULT_EMAILS and other names an address of their own."""
        if emails is None:
            emails = DEFAULT_EMAILS if name == "myapp" else (f"noreply@{name}.example",)
        cert, _ = issue_client(self.ca, name=name, emails=emails, now=now, validity=validity)
        record = CertificateRecord.from_certificate(cert, issued_at=now)
        (registry or self.registry).add(record, allow_shared_addresses=shared)
        return record


class OpenTests(RegistryTestCase):
    def test_pragmas(self) -> None:
        """The database is in WAL mode at the current schema version."""
        connection = sqlite3.connect(self.path)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)

    def test_newer_schema(self) -> None:
        """A registry written by a newer Rail is refused rather than misread."""
        self.registry.close()
        connection = sqlite3.connect(self.path)
        connection.execute("PRAGMA user_version = 99")
        connection.close()
        e = self.assertRaises(RegistryError, Registry.open, self.path)
        self.assertEqual(
            str(e),
            f"{self.path}: registry schema version 99 is newer than this Rail understands"
            f" ({SCHEMA_VERSION}); upgrade Rail",
        )

    def test_unopenable(self) -> None:
        """A path that cannot hold a database is a RegistryError naming it."""
        missing = self.data_dir / "no" / "such" / "registry.sqlite3"
        e = self.assertRaises(RegistryError, Registry.open, missing)
        self.assertTrue(str(e).startswith(f"{missing}: cannot open registry"))

    def test_context_manager(self) -> None:
        """Registry is a context manager that closes the connection."""
        with Registry.open(self.path) as registry:
            self.assertEqual(registry.list_all(), [])
        self.assertRaises(RegistryError, registry.list_all)


class AddTests(RegistryTestCase):
    def test_round_trip(self) -> None:
        """A record is stored and read back identically, with a 159-bit serial intact."""
        record = self.issue(emails=("noreply@ataca.io", "b@x.com"))
        self.assertGreater(record.serial.bit_length(), 64)
        self.assertEqual(self.registry.get(record.serial), record)
        self.assertEqual(self.registry.list_all(), [record])
        self.assertEqual(record.senders, ("noreply@ataca.io", "b@x.com"))
        self.assertEqual(record.webhook, "https://myapp.example/hooks/email")
        self.assertEqual(record.key_type, "ed25519")
        self.assertEqual(record.not_after, NOW + timedelta(days=90))
        self.assertIsNone(record.revoked_at)

    def test_from_certificate(self) -> None:
        """from_certificate records name, PEM and fingerprint of the certificate."""
        cert, _ = issue_client(self.ca, webhook=None)
        record = CertificateRecord.from_certificate(cert, issued_at=NOW)
        self.assertEqual(record.name, "myapp")
        self.assertEqual(record.pem, pem(cert))
        self.assertEqual(len(record.fingerprint_sha256), 64)
        self.assertIsNone(record.webhook)
        self.assertEqual(record.serial, cert.serial_number)

    def test_get_unknown(self) -> None:
        """get() of an unknown serial is None."""
        self.assertIsNone(self.registry.get(12345))

    def test_same_name_twice_is_a_rotation(self) -> None:
        """A name may hold two valid certificates with the same addresses (rotation):
        no conflict, both are listed as valid, and the old one can go by serial."""
        first = self.issue()
        second = self.issue(now=NOW + timedelta(minutes=1))
        later = NOW + timedelta(minutes=1)
        self.assertEqual(self.registry.valid_records(later), [first, second])
        self.registry.revoke(f"{first.serial:x}", later)
        self.assertEqual(self.registry.valid_records(later), [second])

    def test_address_of_another_client_refused(self) -> None:
        """An address another client's valid certificate holds is refused, one problem per
        address, naming the holder; nothing is recorded."""
        first = self.issue(emails=("app@rail.test", "info@rail.test"))
        e = self.assertRaises(
            AddressConflictError,
            self.issue,
            name="two",
            emails=("app@RAIL.test", "two@rail.test", "info@rail.test"),
        )
        self.assertEqual(
            e.problems,
            [
                f"--email {address!r}: already held by the valid certificate of 'myapp'"
                f" (serial {first.serial:x}); two clients could each send as it and its"
                " inbound mail would stay with 'myapp'. Revoke that certificate first, or"
                " pass --allow-shared-address"
                for address in ("app@rail.test", "info@rail.test")
            ],
        )
        self.assertEqual(self.registry.list_all(), [first])

    def test_case_of_local_part_differs(self) -> None:
        """Local parts are compared exactly (as sender authorization and routing do):
        App@ and app@ are different addresses."""
        self.issue(emails=("app@rail.test",))
        self.issue(name="two", emails=("App@rail.test",))
        self.assertEqual(len(self.registry.list_all()), 2)

    def test_shared_address_with_override(self) -> None:
        """With allow_shared_addresses the certificate is recorded and the conflicts are
        returned, the older holder first."""
        first = self.issue(emails=("app@rail.test",))
        cert, _ = issue_client(self.ca, name="two", emails=("app@rail.test",), now=NOW)
        record = CertificateRecord.from_certificate(cert, issued_at=NOW + timedelta(seconds=1))
        [conflict] = self.registry.add(record, allow_shared_addresses=True)
        self.assertEqual(conflict.address, "app@rail.test")
        self.assertEqual(
            [(h.name, h.serial) for h in conflict.holders],
            [("myapp", first.serial), ("two", record.serial)],
        )
        self.assertEqual(conflict.owner, "myapp")
        self.assertEqual(len(self.registry.list_all()), 2)

    def test_address_free_after_revoke_or_expiry(self) -> None:
        """Revoked and expired certificates hold no address."""
        self.issue(emails=("app@rail.test",))
        self.registry.revoke("myapp", NOW)
        self.issue(name="two", emails=("app@rail.test",), validity=timedelta(days=1))
        self.issue(name="three", emails=("app@rail.test",), now=NOW + timedelta(days=2))
        self.assertEqual(len(self.registry.list_all()), 3)

    def test_name_free_after_revoke(self) -> None:
        """After revocation the name can be issued again."""
        self.issue()
        self.registry.revoke("myapp", NOW)
        second = self.issue(now=NOW + timedelta(minutes=1))
        self.assertEqual(len(self.registry.list_all()), 2)
        self.assertEqual(self.registry.valid_records(NOW + timedelta(minutes=1)), [second])

    def test_name_free_after_expiry(self) -> None:
        """After expiry the name can be issued again."""
        self.issue(validity=timedelta(days=1))
        self.issue(now=NOW + timedelta(days=2))
        self.assertEqual(len(self.registry.list_all()), 2)

    def test_duplicate_serial(self) -> None:
        """The same serial twice is refused."""
        record = self.issue()
        again = attrs.evolve(
            record, name="other", senders=("other@x.example",), fingerprint_sha256="0" * 64
        )
        e = self.assertRaises(RegistryError, self.registry.add, again)
        self.assertEqual(str(e), f"serial {record.serial:x}: already recorded")

    def test_persistence(self) -> None:
        """Records and revocations survive closing and reopening the registry."""
        kept = self.issue(name="kept")
        gone = self.issue(name="gone")
        [revoked] = self.registry.revoke("gone", NOW + timedelta(hours=1))
        self.registry.close()
        with self.reopen() as registry:
            self.assertEqual(registry.list_all(), [kept, revoked])
            self.assertEqual(registry.revoked(), [(gone.serial, NOW + timedelta(hours=1))])

    def test_two_connections(self) -> None:
        """The address check sees certificates added through another connection (another
        process)."""
        other = self.reopen()
        self.addCleanup(other.close)
        first = self.issue(registry=other)
        self.assertEqual(self.registry.list_all(), [first])
        self.assertRaises(AddressConflictError, self.issue, name="other", emails=DEFAULT_EMAILS)

    def test_list_order(self) -> None:
        """list_all is ordered by issue time, not by insertion or name."""
        later = self.issue(name="a", now=NOW + timedelta(hours=2))
        earlier = self.issue(name="b", now=NOW)
        self.assertEqual(self.registry.list_all(), [earlier, later])


class FindTests(RegistryTestCase):
    def test_by_name_and_serial(self) -> None:
        """find() matches a name exactly or a serial in any usual spelling."""
        record = self.issue()
        self.issue(name="other")
        hex_serial = f"{record.serial:x}"
        colons = ":".join(f"{record.serial:040X}"[i : i + 2] for i in range(0, 40, 2))
        for query in ["myapp", hex_serial, hex_serial.upper(), "0x" + hex_serial, colons]:
            self.assertEqual(self.registry.find(query), [record], query)
        self.assertEqual(self.registry.find("MyApp"), [])
        self.assertEqual(self.registry.find("nothing"), [])

    def test_hex_looking_name(self) -> None:
        """A name that is also valid hex matches by name (and by serial, if any)."""
        record = self.issue(name="cafe")
        self.assertEqual(self.registry.find("cafe"), [record])

    def test_parse_serial(self) -> None:
        """Serials parse with or without 0x and colons; other text is not a serial."""
        self.assertEqual(parse_serial("0A:1b"), 0x0A1B)
        self.assertEqual(parse_serial("0xff"), 255)
        self.assertIsNone(parse_serial("myapp"))
        self.assertIsNone(parse_serial(""))
        self.assertIsNone(parse_serial("0x"))


class RevokeTests(RegistryTestCase):
    def test_by_name(self) -> None:
        """Revoking by name revokes the valid certificate and stamps the time."""
        record = self.issue()
        when = NOW + timedelta(hours=1)
        revoked = self.registry.revoke("myapp", when)
        self.assertEqual(revoked, [attrs.evolve(record, revoked_at=when)])
        self.assertEqual(self.registry.get(record.serial), revoked[0])
        self.assertEqual(revoked[0].status(when), "revoked")
        self.assertEqual(self.registry.revoked(), [(record.serial, when)])
        self.assertEqual(self.registry.valid_records(when), [])

    def test_by_serial(self) -> None:
        """Revoking by serial revokes exactly that certificate."""
        a = self.issue(name="a")
        b = self.issue(name="b")
        [revoked] = self.registry.revoke(f"{b.serial:X}", NOW)
        self.assertEqual(revoked.serial, b.serial)
        self.assertEqual(self.registry.valid_records(NOW), [a])

    def test_expired_by_serial(self) -> None:
        """An expired certificate can still be revoked by serial."""
        record = self.issue(validity=timedelta(days=1))
        later = NOW + timedelta(days=5)
        [revoked] = self.registry.revoke(f"{record.serial:x}", later)
        self.assertEqual(revoked.revoked_at, later)

    def test_expired_by_name(self) -> None:
        """Revoking by name skips expired certificates, and says so if that is all there is."""
        self.issue(validity=timedelta(days=1))
        e = self.assertRaises(RegistryError, self.registry.revoke, "myapp", NOW + timedelta(days=5))
        self.assertEqual(
            str(e),
            "'myapp': no valid certificate to revoke (already expired; revoke it by serial to"
            " list it in the CRL anyway)",
        )
        self.assertEqual(self.registry.revoked(), [])

    def test_already_revoked(self) -> None:
        """Revoking twice is an error, by name or by serial."""
        record = self.issue()
        self.registry.revoke("myapp", NOW)
        for query in ["myapp", f"{record.serial:x}"]:
            e = self.assertRaises(RegistryError, self.registry.revoke, query, NOW)
            self.assertEqual(str(e), f"{query!r}: already revoked")

    def test_unknown(self) -> None:
        """Revoking something that does not exist is an error."""
        self.issue()
        for query in ["nobody", "abcdef"]:
            e = self.assertRaises(RegistryError, self.registry.revoke, query, NOW)
            self.assertEqual(str(e), f"{query!r}: no such certificate")

    def test_revoked_feeds_crl(self) -> None:
        """revoked() is the input build_crl needs, and the CRL lists exactly those serials."""
        a = self.issue(name="a")
        self.issue(name="b")
        self.registry.revoke("a", NOW)
        crl = build_crl(self.ca, self.registry.revoked(), NOW)
        self.assertEqual(revoked_serials(crl, self.ca.certificate), {a.serial})


class StatusTests(SynchronousTestCase):
    def test_status(self) -> None:
        """valid until notAfter, expired after it; revoked wins over both."""
        ca = make_ca()
        cert, _ = issue_client(ca, validity=timedelta(days=1))
        record = CertificateRecord.from_certificate(cert, issued_at=NOW)
        end = NOW + timedelta(days=1)
        self.assertEqual(record.status(NOW), "valid")
        self.assertEqual(record.status(end), "valid")
        self.assertEqual(record.status(end + timedelta(seconds=1)), "expired")
        revoked = attrs.evolve(record, revoked_at=NOW)
        self.assertEqual(revoked.status(NOW), "revoked")
        self.assertEqual(revoked.status(end + timedelta(days=1)), "revoked")
