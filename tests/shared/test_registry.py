"""The registry, CA and CRL in the shared PostgreSQL database (:mod:`rail.shared.registry`).

The registry's own tests (tests/pki/test_registry.py) run here again on PostgreSQL; the
rest pins what only the shared database does: the CRL published and the other nodes
notified in the revoking transaction, one CA however many nodes start at once, a CA made
before the move to PostgreSQL kept, a schema newer than the code refused.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import psycopg
from twisted.trial.unittest import SynchronousTestCase

from rail.pki.crl import crl_number, parse_crl, revoked_serials
from rail.pki.files import PKIError, load_or_create_ca
from rail.pki.registry import Registry, RegistryError
from rail.pki.revocations import Revocations
from rail.shared.registry import SharedSource
from rail.shared.schema import CHANNEL, SCHEMA_VERSION, SchemaError, open_shared
from rail.webhooks.secrets import UnknownClientError, read_secrets, rotate_secret
from tests.pki import test_registry
from tests.pki.helpers import NOW
from tests.support.postgres import postgres_dsn


class _OnPostgreSQL:
    """Runs a RegistryTestCase's tests on the shared database."""

    def setUp(self) -> None:
        self.dsn = postgres_dsn(self)  # type: ignore[arg-type]
        self.source = SharedSource(self.dsn)
        self.addCleanup(self.source.close)  # type: ignore[attr-defined]
        self.source.load_or_create_ca("rail.test", NOW)  # revocations sign a CRL
        self.registry = self.source.open()
        self.addCleanup(self.registry.close)  # type: ignore[attr-defined]
        self.ca = test_registry.make_ca()

    def reopen(self) -> Registry:
        return self.source.open()


class AddTests(_OnPostgreSQL, test_registry.AddTests):
    pass


class FindTests(_OnPostgreSQL, test_registry.FindTests):
    pass


class RevokeTests(_OnPostgreSQL, test_registry.RevokeTests):
    pass


class SharedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dsn = postgres_dsn(self)  # type: ignore[arg-type]
        self.source = SharedSource(self.dsn)
        self.addCleanup(self.source.close)

    def issue(self, name: str) -> test_registry.CertificateRecord:
        ca, _ = self.source.load_or_create_ca("rail.test", NOW)
        cert, _ = test_registry.issue_client(ca, name=name, emails=(f"{name}@rail.test",), now=NOW)
        record = test_registry.CertificateRecord.from_certificate(cert, issued_at=NOW)
        with self.source.open() as registry:
            registry.add(record)
        return record

    def test_revocation_publishes_crl_and_notifies_at_commit(self) -> None:
        """Revoking stores a CRL signed by the shared CA that lists the serial, with a
        higher number than the one before, and a listener hears ``revocations`` on the
        channel (PostgreSQL delivers it when the revoking transaction commits)."""
        kept, gone = self.issue("kept"), self.issue("gone")
        self.source.publish_crl(self.source.load_ca(), NOW)
        crl = self.source.crl()
        before = crl_number(parse_crl(crl.read_bytes()))
        version = crl.signature()
        listener = psycopg.connect(self.dsn, autocommit=True)
        self.addCleanup(listener.close)
        listener.execute(f"LISTEN {CHANNEL}")
        with self.source.open() as registry:
            registry.revoke("gone", NOW + timedelta(hours=1))
        heard = [n.payload for n in listener.notifies(timeout=5.0, stop_after=1)]
        self.assertEqual(heard, ["revocations"])
        published = parse_crl(crl.read_bytes())
        ca = self.source.load_ca()
        self.assertEqual(revoked_serials(published, ca.certificate), {gone.serial})
        self.assertNotIn(kept.serial, revoked_serials(published, ca.certificate))
        self.assertGreater(crl_number(published), before)
        self.assertNotEqual(crl.signature(), version)

    def test_no_notification_without_commit(self) -> None:
        """A revocation that fails (nothing to revoke) rolls back: nothing is notified and
        the CRL is unchanged."""
        self.issue("kept")
        self.source.publish_crl(self.source.load_ca(), NOW)
        listener = psycopg.connect(self.dsn, autocommit=True)
        self.addCleanup(listener.close)
        listener.execute(f"LISTEN {CHANNEL}")
        version = self.source.crl().signature()
        with self.source.open() as registry:
            self.assertRaises(RegistryError, registry.revoke, "nobody", NOW)
        self.assertEqual(list(listener.notifies(timeout=0.2)), [])
        self.assertEqual(self.source.crl().signature(), version)

    def test_revocations_read_from_the_database(self) -> None:
        """A server's Revocations follow the shared CRL: a revocation through another
        connection shows at the next look."""
        record = self.issue("doomed")
        ca = self.source.load_ca()
        self.source.publish_crl(ca, NOW)
        revocations = Revocations(self.source.crl(), ca.certificate)
        revocations.load()
        self.assertEqual(revocations.serials, frozenset())
        other = SharedSource(self.dsn)
        self.addCleanup(other.close)
        with other.open() as registry:
            registry.revoke("doomed", NOW)
        revocations.refresh()
        self.assertEqual(revocations.serials, {record.serial})

    def test_one_ca_for_nodes_starting_together(self) -> None:
        """Several nodes making the CA at once end up with one: the same certificate and
        key for all, one of them reporting it created it."""
        results: list[tuple[bytes, bool]] = []
        errors: list[BaseException] = []

        def start() -> None:
            source = SharedSource(self.dsn)
            try:
                ca, created = source.load_or_create_ca("rail.test", NOW)
                results.append((test_registry.pem(ca.certificate), created))
            except BaseException as e:  # reported below
                errors.append(e)
            finally:
                source.close()

        threads = [threading.Thread(target=start) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(errors, [])
        self.assertEqual(len({pem for pem, _ in results}), 1)
        self.assertEqual(sorted(created for _, created in results), [False, False, False, True])

    def test_local_ca_imported(self) -> None:
        """A data directory's CA (a single node moving to PostgreSQL) becomes the shared
        CA, so the certificates it issued stay valid."""
        data_dir = Path(self.mktemp())
        local, _ = load_or_create_ca(data_dir, "rail.test", NOW)
        source = SharedSource(self.dsn, data_dir=data_dir)
        self.addCleanup(source.close)
        ca, created = source.load_or_create_ca("rail.test", NOW)
        self.assertTrue(created)
        self.assertEqual(ca.certificate, local.certificate)
        self.assertEqual(self.source.load_ca().certificate, local.certificate)

    def test_no_ca_yet(self) -> None:
        """load_ca before any CA was made names the database and how one is made."""
        e = self.assertRaises(PKIError, self.source.load_ca)
        self.assertIn("no CA yet", str(e))

    def test_newer_schema_refused(self) -> None:
        """A schema version above this code's is refused with the versions named."""
        open_shared(self.dsn).close()
        with psycopg.connect(self.dsn, autocommit=True) as admin:
            admin.execute("UPDATE rail_shared.schema_version SET version = 99")
        e = self.assertRaises(SchemaError, open_shared, self.dsn)
        self.assertIn(f"version 99, newer than this Rail understands ({SCHEMA_VERSION})", str(e))

    def test_tables_in_their_own_schema(self) -> None:
        """The shared tables are in schema rail_shared, none in public (the queue's)."""
        open_shared(self.dsn).close()
        with psycopg.connect(self.dsn, autocommit=True) as admin:
            tables = admin.execute(
                "SELECT table_schema, table_name FROM information_schema.tables"
                " WHERE table_schema IN ('public', 'rail_shared') ORDER BY 2"
            ).fetchall()
        self.assertEqual(
            tables,
            [
                ("rail_shared", name)
                for name in (
                    "blobs",
                    "certificates",
                    "client_events",
                    "schema_version",
                    "versions",
                    "webhook_secrets",
                )
            ],
        )

    def test_client_events_and_webhook_secrets(self) -> None:
        """Event subscriptions and rotated webhook secrets are stored beside the shared
        registry and read back through another connection; an unknown client's rotation
        is refused."""
        self.issue("app")
        with self.source.open() as registry:
            registry.set_events("app", ["message.delivered"], None, NOW, allow_http_loopback=False)
        other = SharedSource(self.dsn)
        self.addCleanup(other.close)
        with other.open() as registry:
            [settings] = registry.all_events()
        self.assertEqual((settings.name, settings.types), ("app", ("message.delivered",)))
        rotation = rotate_secret(self.source, "app", NOW.timestamp(), 3600.0)
        secrets = read_secrets(other)
        self.assertEqual([s.secret for s in secrets["app"]], [rotation.secret, None])
        self.assertRaises(UnknownClientError, rotate_secret, self.source, "nobody", 1.0)


class SecretTests(SynchronousTestCase):
    def test_first_node_wins(self) -> None:
        """A shared secret is made once: a second node's make is not stored, both read
        the first one's."""
        dsn = postgres_dsn(self)  # type: ignore[arg-type]
        first, second = SharedSource(dsn), SharedSource(dsn)
        self.addCleanup(first.close)
        self.addCleanup(second.close)
        self.assertEqual(first.secret("s", lambda: b"one", 1.0), b"one")
        self.assertEqual(second.secret("s", lambda: b"two", 2.0), b"one")


class MoveTests(SynchronousTestCase):
    def test_single_node_registry_copied_once(self) -> None:
        """Taking over a single node's CA copies its registry into the empty shared one in
        the same step (certificates as they were, revocations included, event
        subscriptions and rotated webhook secrets), and the CRL then published lists its
        revocations; another copy (another node, a restart) changes nothing."""
        data_dir = Path(self.mktemp())
        ca, _ = load_or_create_ca(data_dir, "rail.test", NOW)
        with Registry.open(data_dir / "registry.sqlite3") as local:
            records = []
            for name in ("kept", "gone"):
                cert, _ = test_registry.issue_client(
                    ca, name=name, emails=(f"{name}@rail.test",), now=NOW
                )
                record = test_registry.CertificateRecord.from_certificate(cert, issued_at=NOW)
                local.add(record)
                records.append(record)
            [gone] = local.revoke("gone", NOW + timedelta(hours=1))
            local.set_events("kept", ["message.bounced"], None, NOW, allow_http_loopback=False)
        rotation = rotate_secret(data_dir, "kept", NOW.timestamp(), 60.0)
        dsn = postgres_dsn(self)  # type: ignore[arg-type]
        source = SharedSource(dsn, data_dir=data_dir)
        self.addCleanup(source.close)
        self.assertTrue(source.load_or_create_ca("rail.test", NOW)[1])
        with source.open() as shared:
            self.assertEqual(shared.list_all(), [records[0], gone])
            self.assertEqual([e.name for e in shared.all_events()], ["kept"])
        self.assertEqual(read_secrets(source)["kept"][0].secret, rotation.secret)
        source.publish_crl(source.load_ca(), NOW)
        published = parse_crl(source.crl().read_bytes())
        self.assertEqual(revoked_serials(published, ca.certificate), {gone.serial})
        self.assertEqual(source.import_local(NOW), 0)
