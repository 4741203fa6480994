"""Two ``twistd rail`` nodes on one PostgreSQL database get one certificate from pebble:
one node orders while the other answers pebble's HTTP-01 request from the database, and
both serve the certificate (issue 17).

Node B starts first while the test holds the order lock (as a node busy ordering would):
B's order is refused as busy. Then the lock is released and node A starts and orders;
pebble validates on node B's port 80 only (A's port 80 is elsewhere), so B answers the
token A committed to the database. A stores the certificate; B, notified, installs it.
"""

from __future__ import annotations

import shutil
from typing import Any

import psycopg
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.names import dns

from rail.acme.decide import certificate_names
from tests.integration.processes import free_port, wait_for_port
from tests.interop.helpers import RunningRail, start_rail
from tests.interop.test_acme_service import (
    _ISSUE_TIMEOUT,
    NAMES,
    _https_leaf,
    _PebbleCase,
)
from tests.support.dnsserver import start_dns
from tests.support.postgres import postgres_dsn

_ORDER_LOCK = 126939302182916


class SharedAcmeTests(_PebbleCase):
    async def _start_dns_and_pebble(self) -> None:
        address = dns.Record_A("127.0.0.1", ttl=1)
        self.dns = await start_dns(reactor, {name: [address] for name in NAMES})
        self.addCleanup(self.dns.stop)
        await self._start_pebble(self.dns.port)

    async def _node(self, dsn: str, http_port: int, own_ca: bool) -> RunningRail:
        def configure(document: dict[str, Any]) -> None:
            document["tls"] = {
                "acme": {
                    "directory": self.directory_url,
                    "ca_file": str(self.tls_ca),
                    "email": "ops@rail.test",
                }
            }
            document["listen"]["http"] = f"tcp:{http_port}:interface=127.0.0.1"
            document["storage"] = {"backend": "postgresql", "dsn": dsn}

        def setup(directory: Any) -> None:
            if not own_ca:  # this node's CA comes from the database (the other node's)
                shutil.rmtree(directory / "data" / "ca")

        running: RunningRail = await start_rail(self, configure, setup)
        await wait_for_port(http_port, running.server)
        return running

    async def _leaf_of(self, running: RunningRail) -> Any:
        waited = 0.0
        context = self._trusting_pebble()
        while True:
            if running.server.ended.called:
                self.fail(running.server.output.decode(errors="replace"))
            try:
                return (await deferToThread(_https_leaf, running.https_port, context))[1]
            except OSError:
                if waited >= _ISSUE_TIMEOUT:
                    self.fail(running.server.output.decode(errors="replace"))
                await deferLater(reactor, 0.5, lambda: None)
                waited += 0.5

    async def test_one_order_two_nodes(self) -> None:
        """Node A's order is validated through node B's port 80 (the token read from the
        database), and both nodes serve the one certificate pebble issued, without a
        restart; B never ordered one of its own."""
        dsn = postgres_dsn(self)
        holder = psycopg.connect(dsn, autocommit=True)
        self.addCleanup(holder.close)
        holder.execute("SELECT pg_advisory_lock(%s)", (_ORDER_LOCK,))
        node_b = await self._node(dsn, self.http_port, own_ca=True)
        waited = 0.0
        while b"another node is ordering" not in node_b.server.output:
            if node_b.server.ended.called or waited >= 30:
                self.fail(node_b.server.output.decode(errors="replace"))
            await deferLater(reactor, 0.1, lambda: None)
            waited += 0.1
        holder.execute("SELECT pg_advisory_unlock(%s)", (_ORDER_LOCK,))
        node_a = await self._node(dsn, free_port(), own_ca=False)
        leaf_a = await self._leaf_of(node_a)
        leaf_b = await self._leaf_of(node_b)
        self.assertEqual(leaf_a.issuer, self.intermediate.subject)
        self.assertEqual(certificate_names(leaf_a), NAMES)
        self.assertEqual(leaf_b, leaf_a)
        self.assertIn(b"another node got", node_b.server.output)
        after_busy = node_b.server.output.split(b"another node is ordering", 1)[1]
        self.assertNotIn(b"ordering an ACME certificate", after_busy)
