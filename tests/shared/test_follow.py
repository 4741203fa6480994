"""A running node follows another's DKIM rotation (:mod:`rail.shared.follow`)."""

from __future__ import annotations

from pathlib import Path

from twisted.internet.defer import maybeDeferred
from twisted.trial.unittest import SynchronousTestCase

from rail.dkim.keys import KeyStore
from rail.shared.follow import follow_dkim
from rail.shared.mirror import synced
from rail.shared.registry import SharedSource
from tests.support.postgres import postgres_dsn

NOW = 1_800_000_000.0


class FollowTests(SynchronousTestCase):
    def test_rotation_on_another_node_followed(self) -> None:
        """After another node's rotation, the handler copies the keys, the running key
        store signs with the new generation and the zones are rebuilt; with nothing
        new, the zones are left alone."""
        dsn = postgres_dsn(self)  # type: ignore[arg-type]
        source = SharedSource(dsn)
        self.addCleanup(source.close)
        a, b = Path(self.mktemp()), Path(self.mktemp())
        for node in (a, b):
            node.mkdir()
            synced(
                source,
                node,
                lambda node=node: KeyStore.open(node / "dkim").ensure(["rail.test"], NOW),
                now=NOW,
            )
        keys = KeyStore.open(b / "dkim")
        rebuilt: list[int] = []
        follow = follow_dkim(source, b, keys, lambda: rebuilt.append(1), maybeDeferred)
        generation = synced(
            source,
            a,
            lambda: KeyStore.open(a / "dkim").rotate("rail.test", NOW + 5),
            paths=("dkim/",),
            now=NOW + 5,
        )
        self.successResultOf(follow())
        signing = keys.signing_keys("rail.test", NOW + 10)
        assert signing is not None
        self.assertEqual(signing.ed25519_selector, generation.ed25519_selector)
        self.assertEqual(rebuilt, [1])
        self.successResultOf(follow())
        self.assertEqual(rebuilt, [1])
