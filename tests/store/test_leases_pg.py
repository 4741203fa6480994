"""Leases on PostgreSQL, the database several nodes share: the lease rules and the two-node
store contract of ``test_leases.py`` and ``test_failover.py`` on a real server, and what only
a server shows: two claims at the same moment get disjoint jobs (``FOR UPDATE SKIP
LOCKED``), and a restarted process is a new node.
"""

from __future__ import annotations

from typing import Any

import psycopg
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from rail.store import lease as lease_module
from rail.store.db import POSTGRESQL, Connection
from rail.store.deliveries import claim_due, insert_message
from rail.store.lease import Lease, node_id
from rail.store.pg import PGConnection, connect
from rail.store.pgschema import prepare
from rail.store.postgres import PostgresStore
from tests.store.test_contract import make_message
from tests.store.test_failover import _LEASE, _FailoverContract
from tests.store.test_leases import _LeaseContract
from tests.support.postgres import postgres_dsn

_T0 = 1_800_000_000.0


def _database(test: TestCase) -> str:
    """A fresh database with Rail's schema; its DSN."""
    dsn = postgres_dsn(test)
    connection = connect(dsn)
    try:
        prepare(connection, "test")
    finally:
        connection.close()
    return dsn


def _connection(test: TestCase, dsn: str) -> PGConnection:
    connection = connect(dsn)
    test.addCleanup(connection.close)
    return connection


class PGLeaseTests(_LeaseContract, TestCase):
    def connect(self) -> Connection:
        return _connection(self, _database(self))


class PGFailoverTests(_FailoverContract, TestCase):
    def setUp(self) -> None:
        self.dsn = _database(self)
        super().setUp()

    def node(self, name: str) -> PostgresStore:
        store = PostgresStore.open(self.dsn, reactor, max_queued=10_000, lease=_LEASE, node=name)
        self.addCleanup(store.close)
        store.start()
        return store

    def scalar(self, sql: str) -> Any:
        with psycopg.connect(self.dsn) as connection:
            row = connection.execute(sql).fetchone()
            assert row is not None
            return row[0]


class PGConcurrencyTests(TestCase):
    def test_simultaneous_claims_get_disjoint_jobs(self) -> None:
        """While one node's claim transaction holds its rows, another node's claim skips
        them (it neither waits nor takes them): the two get disjoint jobs that together
        are every due job; once both commit, no node's claim (theirs included) reads them."""
        dsn = _database(self)
        first, second = _connection(self, dsn), _connection(self, dsn)
        ids = []
        for n in range(6):
            message = make_message(received_at=_T0 + n)
            first.execute("BEGIN")
            insert_message(first, message)
            first.execute("COMMIT")
            ids.append(message.id)
        # A claim that waited for the other's locks would fail here rather than hang.
        second.execute("SET lock_timeout = '5s'")
        first.execute(POSTGRESQL.begin)
        (a_jobs, _) = claim_due(first, _T0 + 10, 3, frozenset(), Lease("A", _T0 + 10, _T0 + 70))
        second.execute(POSTGRESQL.begin)
        (b_jobs, _) = claim_due(second, _T0 + 10, 10, frozenset(), Lease("B", _T0 + 10, _T0 + 70))
        second.execute("COMMIT")
        first.execute("COMMIT")
        a_ids = {job.message_id for job in a_jobs}
        b_ids = {job.message_id for job in b_jobs}
        self.assertEqual((len(a_ids), len(b_ids)), (3, 3))
        self.assertEqual(a_ids & b_ids, set())
        self.assertEqual(a_ids | b_ids, set(ids))
        rows = first.execute("SELECT message_id, claimed_by FROM recipients").fetchall()
        self.assertEqual(
            {m: c for m, c in rows}, {**dict.fromkeys(a_ids, "A"), **dict.fromkeys(b_ids, "B")}
        )
        for connection, node in ((first, "C"), (second, "A")):
            connection.execute(POSTGRESQL.begin)
            later = Lease(node, _T0 + 20, _T0 + 80)
            (jobs, _) = claim_due(connection, _T0 + 20, 10, frozenset(), later)
            connection.execute("COMMIT")
            self.assertEqual(jobs, [], node)


class NodeIdTests(TestCase):
    def test_restarted_process_is_a_new_node(self) -> None:
        """A process's id is the same all its life and names its host and pid; a new
        process (even one given the same pid) has another, so it never takes its
        predecessor's live leases for its own."""
        first = node_id()
        self.assertEqual(node_id(), first)
        saved = lease_module._NODE
        self.addCleanup(setattr, lease_module, "_NODE", saved)
        lease_module._NODE = None  # what a new process starts with
        second = node_id()
        self.assertNotEqual(second, first)
        self.assertEqual(second.rsplit("/", 1)[0], first.rsplit("/", 1)[0])

    async def test_restart_waits_for_its_predecessors_leases(self) -> None:
        """A store without a given id writes this process's id; after a restart (a new
        id) its claims leave the predecessor's jobs alone until their lease ends."""
        dsn = _database(self)
        before = PostgresStore.open(dsn, reactor, max_queued=100, lease=_LEASE)
        self.addCleanup(before.close)
        before.start()
        message = make_message(received_at=_T0)
        await before.accept(message)
        (job,) = await before.claim(_T0, 10, frozenset())
        await before.close()
        with psycopg.connect(dsn) as connection:
            row = connection.execute("SELECT claimed_by FROM recipients").fetchone()
        self.assertEqual(row, (node_id(),))
        after = PostgresStore.open(dsn, reactor, max_queued=100, lease=_LEASE, node="restarted")
        self.addCleanup(after.close)
        after.start()
        self.assertEqual(await after.claim(_T0 + 1, 10, frozenset()), [])
        (taken,) = await after.claim(_T0 + _LEASE + 1, 10, frozenset())
        self.assertEqual(taken.key, job.key)
