"""ACME state in the shared database (:mod:`rail.shared.acme`): one order at a time, one
certificate for every node, challenges any node answers."""

from __future__ import annotations

from pathlib import Path

import psycopg
from twisted.trial.unittest import SynchronousTestCase

from rail.acme.client import OrderBusy
from rail.acme.storage import save_acme_material
from rail.pki.tls import ServerMaterial
from rail.shared.acme import SharedChallenges, lookup, ordered_once, shared_material
from rail.shared.registry import SharedSource
from rail.shared.schema import CHANNEL
from tests.acme.helpers import DAY, NOW, material
from tests.support.postgres import postgres_dsn

NAMES = ("mx1.rail.test", "mx2.rail.test")
RENEW_BEFORE = 30 * DAY


class SharedAcmeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dsn = postgres_dsn(self)  # type: ignore[arg-type]
        self.source = SharedSource(self.dsn)
        self.addCleanup(self.source.close)

    def node(self) -> Path:
        path = Path(self.mktemp())
        path.mkdir()
        return path

    def order_into(self, data_dir: Path, issued: ServerMaterial) -> list[int]:
        calls: list[int] = []

        def order() -> ServerMaterial:
            calls.append(1)
            save_acme_material(data_dir, issued)
            return issued

        ordered_once(self.source, data_dir, NAMES, RENEW_BEFORE, order, lambda: NOW)
        return calls

    def test_order_stored_and_notified_then_used_by_the_next_node(self) -> None:
        """The first node orders; its certificate is stored and ``acme`` notified; a
        second node due at the same time uses it instead of ordering, and a third node
        told of it installs the same one."""
        listener = psycopg.connect(self.dsn, autocommit=True)
        self.addCleanup(listener.close)
        listener.execute(f"LISTEN {CHANNEL}")
        issued = material(NAMES, not_after=NOW + 90 * DAY)
        self.assertEqual(self.order_into(self.node(), issued), [1])
        self.assertIn("acme", [n.payload for n in listener.notifies(timeout=5.0, stop_after=1)])
        self.assertEqual(self.order_into(self.node(), material(NAMES)), [])
        third = shared_material(self.source, self.node(), NOW)
        assert third is not None
        self.assertEqual(third.chain, issued.chain)

    def test_one_node_at_a_time(self) -> None:
        """While a node holds the order lock another node's order is OrderBusy."""
        holder = psycopg.connect(self.dsn, autocommit=True)
        self.addCleanup(holder.close)
        holder.execute("SELECT pg_try_advisory_lock(126939302182916)")
        self.assertRaises(
            OrderBusy,
            ordered_once,
            self.source,
            self.node(),
            NAMES,
            RENEW_BEFORE,
            lambda: self.fail("ordered"),
            lambda: NOW,
        )
        holder.execute("SELECT pg_advisory_unlock(126939302182916)")
        self.assertEqual(self.order_into(self.node(), material(NAMES)), [1])

    def test_due_certificate_ordered_again(self) -> None:
        """A stored certificate that is due for renewal does not stop an order."""
        self.order_into(self.node(), material(NAMES, not_after=NOW + 10 * DAY))
        self.assertEqual(self.order_into(self.node(), material(NAMES)), [1])

    def test_challenges_answered_by_any_node(self) -> None:
        """A token added by the ordering node is found by another node's lookup until it
        is removed; anything that is not a token is not looked up."""
        challenges = SharedChallenges(self.source, lambda: NOW)
        challenges.add("tok-1", "tok-1.thumb")
        other = SharedSource(self.dsn)
        self.addCleanup(other.close)
        self.assertEqual(lookup(other, "tok-1"), "tok-1.thumb")
        challenges.remove("tok-1")
        self.assertIsNone(lookup(other, "tok-1"))
        self.assertIsNone(lookup(other, "../etc"))

    def test_stale_challenges_purged(self) -> None:
        """A token left by an order that crashed a day ago is deleted at the next add."""
        SharedChallenges(self.source, lambda: NOW - 2 * DAY).add("old", "old.thumb")
        SharedChallenges(self.source, lambda: NOW).add("new", "new.thumb")
        self.assertIsNone(lookup(self.source, "old"))
        self.assertEqual(lookup(self.source, "new"), "new.thumb")
