"""Files every node holds alike, kept in the shared database (:mod:`rail.shared.mirror`)."""

from __future__ import annotations

import threading
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.dkim.keys import KeyStore
from rail.forward.secret import load_secret
from rail.shared.mirror import SHARED_FILES, MirrorError, _local, pull, synced
from rail.shared.registry import SharedSource
from rail.webhooks.key import load_or_create_key
from tests.support.postgres import postgres_dsn

NOW = 1_800_000_000.0


def _make(data_dir: Path) -> None:
    """What a starting node makes when missing (a subset of rail.service's)."""
    KeyStore.open(data_dir / "dkim").ensure(["rail.test"], NOW)
    load_or_create_key(data_dir)
    load_secret(data_dir)


class MirrorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dsn = postgres_dsn(self)  # type: ignore[arg-type]
        self.source = SharedSource(self.dsn)
        self.addCleanup(self.source.close)

    def node(self) -> Path:
        path = Path(self.mktemp())
        path.mkdir()
        return path

    def test_nodes_starting_together_make_one_set(self) -> None:
        """Three nodes starting at once with empty data directories end with the same
        DKIM keys, webhook key and SRS secret, byte for byte."""
        nodes = [self.node() for _ in range(3)]
        errors: list[BaseException] = []

        def start(data_dir: Path) -> None:
            source = SharedSource(self.dsn)
            try:
                synced(source, data_dir, lambda: _make(data_dir), now=NOW)
            except BaseException as e:  # reported below
                errors.append(e)
            finally:
                source.close()

        threads = [threading.Thread(target=start, args=(n,)) for n in nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(errors, [])
        files = [_local(n, SHARED_FILES) for n in nodes]
        self.assertIn("webhook/ed25519.key", files[0])
        self.assertIn("srs.key", files[0])
        self.assertIn("dkim/rail.test/state.json", files[0])
        self.assertEqual(files[1], files[0])
        self.assertEqual(files[2], files[0])

    def test_rotation_reaches_the_other_node(self) -> None:
        """A DKIM rotation on one node is stored; the other node's pull copies it and
        its key store then signs with the new generation."""
        a, b = self.node(), self.node()
        synced(self.source, a, lambda: _make(a), now=NOW)
        synced(self.source, b, lambda: _make(b), now=NOW)
        keys_b = KeyStore.open(b / "dkim")
        before = keys_b.signing_keys("rail.test", NOW + 10)
        generation = synced(
            self.source,
            a,
            lambda: KeyStore.open(a / "dkim").rotate("rail.test", NOW + 5),
            paths=("dkim/",),
            now=NOW + 5,
        )
        self.assertGreater(pull(self.source, b, ("dkim/",)), 0)
        keys_b.reload()
        after = keys_b.signing_keys("rail.test", NOW + 10)
        assert before is not None and after is not None
        self.assertNotEqual(after.ed25519_selector, before.ed25519_selector)
        self.assertEqual(after.ed25519_selector, generation.ed25519_selector)
        self.assertEqual(pull(self.source, b, ("dkim/",)), 0)

    def test_existing_local_files_uploaded_once(self) -> None:
        """A node that had its own files before the database held any (a single node
        moving to PostgreSQL) stores them; a later node gets those, not new ones."""
        a = self.node()
        key = load_or_create_key(a)
        synced(self.source, a, lambda: _make(a), now=NOW)
        b = self.node()
        synced(self.source, b, lambda: _make(b), now=NOW)
        self.assertEqual(load_or_create_key(b).public_text, key.public_text)

    def test_unreachable_database(self) -> None:
        """A database that cannot be reached is a MirrorError naming it."""
        source = SharedSource("host=127.0.0.1 port=1 dbname=none connect_timeout=2")
        e = self.assertRaises(MirrorError, synced, source, self.node(), lambda: None, now=NOW)
        self.assertIn("the shared database: cannot connect", str(e))

    def test_new_domain_keys_made_once(self) -> None:
        """Two nodes signing for a domain neither has keys for (a new client's) end up
        with the same keys: the second node's creation, under the mirror's lock, finds
        the first one's stored keys and loads them."""
        nodes = [self.node() for _ in range(2)]
        stores = [
            KeyStore.open(
                node / "dkim",
                guard=lambda make, node=node: synced(
                    self.source, node, make, paths=("dkim/",), now=NOW
                ),
            )
            for node in nodes
        ]
        self.assertEqual(stores[0].ensure(["new.test"], NOW), ["new.test"])
        self.assertEqual(stores[1].ensure(["new.test"], NOW), [])
        first = stores[0].signing_keys("new.test", NOW + 1)
        second = stores[1].signing_keys("new.test", NOW + 1)
        assert first is not None and second is not None
        self.assertEqual(second.ed25519_selector, first.ed25519_selector)
        self.assertEqual(_local(nodes[0], ("dkim/",)), _local(nodes[1], ("dkim/",)))
