"""The zone of a cluster (``dns.nodes``): every node is a mail server of every domain."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.cli import run
from rail.config import ConfigError, parse_config
from rail.config.schema import DNS, ClusterNode
from rail.dns.records import AAAA, MX, TXT, A
from rail.dns.zone import domain_records

NODES = (
    ClusterNode(hostname="mx1.example.com", ipv4=("192.0.2.1",), ipv6=("2001:db8::1",)),
    ClusterNode(hostname="mx2.example.com", ipv4=("192.0.2.2",)),
)


class ZoneTests(SynchronousTestCase):
    def test_each_node_published(self) -> None:
        """Each node gets an MX of preference 10 in each domain and in its bounce domain,
        its own A/AAAA records, and SPF lists every node's addresses; mta-sts.<domain>
        has every node's addresses (any node serves the policy)."""
        records = domain_records(
            ["example.com"], "mx1.example.com", DNS(), {}, "bounces.{domain}", nodes=NODES
        )["example.com"]

        def at(name: str, kind: type) -> list[object]:
            return [r.data for r in records if r.name == name and isinstance(r.data, kind)]

        self.assertEqual(
            at("example.com", MX), [MX(10, "mx1.example.com"), MX(10, "mx2.example.com")]
        )
        self.assertEqual(
            at("bounces.example.com", MX), [MX(10, "mx1.example.com"), MX(10, "mx2.example.com")]
        )
        self.assertEqual(at("mx1.example.com", A), [A("192.0.2.1")])
        self.assertEqual(at("mx1.example.com", AAAA), [AAAA("2001:db8::1")])
        self.assertEqual(at("mx2.example.com", A), [A("192.0.2.2")])
        self.assertEqual(at("mx2.example.com", AAAA), [])
        [spf] = [t for t in at("example.com", TXT) if "".join(t.strings).startswith("v=spf1")]
        self.assertEqual(
            "".join(spf.strings), "v=spf1 mx ip4:192.0.2.1 ip4:192.0.2.2 ip6:2001:db8::1 -all"
        )
        # The HELO identity of each node's own mail passes SPF.
        self.assertEqual(at("mx2.example.com", TXT), [TXT(("v=spf1 a -all",))])
        self.assertEqual(at("mta-sts.example.com", A), [A("192.0.2.1"), A("192.0.2.2")])

    def test_without_nodes_unchanged(self) -> None:
        """Without nodes, the zone is as before: one MX to hostname, dns.ipv4 in SPF."""
        config = DNS(ipv4=("192.0.2.9",))
        records = domain_records(["example.com"], "mx.example.com", config, {})["example.com"]
        self.assertEqual(
            [r.data for r in records if isinstance(r.data, MX)], [MX(10, "mx.example.com")]
        )
        self.assertEqual(
            [r.data for r in records if r.name == "mx.example.com"],
            [A("192.0.2.9"), TXT(("v=spf1 a -all",))],
        )


class ConfigTests(SynchronousTestCase):
    base = {"hostname": "mx1.example.com", "tls": {"self_signed": True}}
    nodes = [
        {"hostname": "mx1.example.com", "ipv4": ["192.0.2.1"]},
        {"hostname": "mx2.example.com", "ipv4": ["192.0.2.2"]},
    ]
    storage = {"backend": "postgresql", "dsn": "dbname=rail"}

    def problems(self, **extra: object) -> list[str]:
        try:
            parse_config({**self.base, **extra}, Path("/tmp"))
        except ConfigError as error:
            return [f"{p.path}: {p.message}" for p in error.problems]
        return []

    def test_valid(self) -> None:
        """Two nodes sharing PostgreSQL, this one among them, parse into dns.nodes."""
        config = parse_config(
            {**self.base, "dns": {"nodes": self.nodes}, "storage": self.storage}, Path("/tmp")
        )
        self.assertEqual(
            [n.hostname for n in config.dns.nodes], ["mx1.example.com", "mx2.example.com"]
        )

    def test_refused(self) -> None:
        """Fail closed, each problem at its path: a node without a host name, an unknown
        key, a bad address, a node listed twice, this node missing, addresses given twice,
        several nodes without a shared database."""
        self.assertEqual(
            self.problems(dns={"nodes": [{"ipv4": ["x"], "port": 1}]}),
            [
                "dns.nodes[0].ipv4[0]: expected an IPv4 address, got 'x'",
                "dns.nodes[0].port: unknown key",
                "dns.nodes[0].hostname: required",
            ],
        )
        self.assertEqual(
            self.problems(dns={"nodes": [*self.nodes, self.nodes[0]]}, storage=self.storage),
            ["dns: nodes: mx1.example.com listed more than once"],
        )
        self.assertEqual(
            self.problems(dns={"nodes": self.nodes[1:]}),
            ["(config): dns.nodes: must list this node's hostname 'mx1.example.com'"],
        )
        self.assertEqual(
            self.problems(dns={"nodes": self.nodes, "ipv4": ["192.0.2.1"]}, storage=self.storage),
            ["dns: ipv4, ipv6: with nodes, give this node's addresses in its nodes entry instead"],
        )
        self.assertEqual(
            self.problems(dns={"nodes": self.nodes}),
            [
                "(config): dns.nodes: several nodes share one database: storage.backend must"
                " be postgresql"
            ],
        )


class RecordsCommandTests(SynchronousTestCase):
    def test_rail_dns_records_lists_every_node(self) -> None:
        """``rail dns records`` prints an MX and the addresses of every node."""
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        config = directory / "rail.yaml"
        config.write_text(
            "hostname: mx1.example.com\ndata_dir: data\nlocal_domains: [example.com]\n"
            "tls:\n  self_signed: true\n"
            "dns:\n  nodes:\n"
            "    - {hostname: mx1.example.com, ipv4: [192.0.2.1]}\n"
        )
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", io.StringIO())
        self.assertEqual(run(["dns", "records", "--config", str(config)]), 0)
        self.assertIn("MX\t10 mx1.example.com.", out.getvalue())
        self.assertIn("192.0.2.1", out.getvalue())
