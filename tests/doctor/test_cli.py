"""``rail doctor`` as a command, and the report the admin API mounts."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import attrs
import yaml
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from rail.cli import run
from rail.config import Config, parse_config
from rail.doctor.cli import parse_resolver
from rail.doctor.run import domains_report, resolver_servers
from tests.doctor.fixtures import DOMAIN, HOSTNAME, World, make_world
from tests.integration.processes import REPO
from tests.integration.processes import run as run_process

_MAIN = "import sys; from rail.cli import main; sys.argv[0] = 'rail'; main()"


class CommandTests(TestCase):
    async def start(self) -> tuple[World, Path]:
        directory = Path(self.mktemp()).absolute()
        directory.mkdir(parents=True)
        world = await make_world(reactor, directory)
        self.addCleanup(world.dns.stop)
        self.addCleanup(world.stop)
        # No listeners: the command (which has no port overrides) connects to no port
        # of this machine.
        listen = dict.fromkeys(("https", "submission", "inbound", "http", "dns"))
        path = directory / "rail.yaml"
        path.write_text(yaml.safe_dump({**world.raw, "listen": listen}))
        return world, path

    def rail(self, *args: str) -> tuple[int, str]:
        """Run ``rail ARGS`` in this process: the exit code and stderr."""
        err = io.StringIO()
        self.patch(sys, "stderr", err)
        return run(list(args)), err.getvalue()

    async def test_command(self) -> None:
        """The command asks the resolver given by ``--resolver`` and prints JSON; the
        certificate from a CA the system does not trust is a FAIL, so it exits 1."""
        world, path = await self.start()
        resolver = f"{world.dns.address}:{world.dns.port}"
        out, err, code = await run_process(
            sys.executable,
            "-c",
            _MAIN,
            "doctor",
            "--config",
            str(path),
            "--resolver",
            resolver,
            "--json",
            env={"PYTHONPATH": str(REPO)},
        )
        self.assertEqual((code, err), (1, b""))
        checks = {(c["check"], c["domain"]): c for c in json.loads(out)["checks"]}
        self.assertEqual(checks[("mx", DOMAIN)]["status"], "OK")
        self.assertEqual(checks[("ptr 127.0.0.1", HOSTNAME)]["status"], "OK")
        self.assertEqual(checks[("certificate chain", HOSTNAME)]["status"], "FAIL")
        self.assertEqual([name for name, _ in checks if name.startswith("port")], [])

    async def test_not_a_local_domain(self) -> None:
        """``--domain`` must be a local domain: exit 1 before asking anything."""
        world, path = await self.start()
        code, err = self.rail("doctor", "--config", str(path), "--domain", "other.test")
        self.assertEqual(code, 1)
        self.assertEqual(err, f"rail: other.test: not a local domain (local: {DOMAIN})\n")
        self.assertEqual(world.dns.queries, [])

    async def test_bad_resolver(self) -> None:
        """``--resolver`` takes an address, not a name: a usage error (exit 2)."""
        _world, path = await self.start()
        code, err = self.rail("doctor", "--config", str(path), "--resolver", "dns.test")
        self.assertEqual(code, 2)
        self.assertIn("--resolver: expected an IP address (not a name)", err)


class ResolverChoiceTests(SynchronousTestCase):
    def config(self, **raw: object) -> Config:
        base: dict[str, object] = {"hostname": HOSTNAME, "tls": {"self_signed": True}}
        return parse_config({**base, **raw}, Path("/nonexistent"))

    def test_order(self) -> None:
        """``--resolver`` first, then ``delivery.nameservers``, then
        ``inbound.nameservers``, then None (the system's resolv.conf)."""
        both = self.config(
            delivery={"nameservers": ["192.0.2.1"]}, inbound={"nameservers": ["192.0.2.2:5353"]}
        )
        inbound = self.config(inbound={"nameservers": ["192.0.2.2:5353"]})
        self.assertEqual(resolver_servers(both, ("192.0.2.9", 53)), [("192.0.2.9", 53)])
        self.assertEqual(list(resolver_servers(both, None) or ()), [("192.0.2.1", 53)])
        self.assertEqual(list(resolver_servers(inbound, None) or ()), [("192.0.2.2", 5353)])
        self.assertIsNone(resolver_servers(self.config(), None))

    def test_parse_resolver(self) -> None:
        """``--resolver`` takes IP, IP:PORT and [IPv6]:PORT."""
        self.assertEqual(parse_resolver("192.0.2.1"), ("192.0.2.1", 53))
        self.assertEqual(parse_resolver("192.0.2.1:5353"), ("192.0.2.1", 5353))
        self.assertEqual(parse_resolver("[2001:db8::1]:5353"), ("2001:db8::1", 5353))
        self.assertRaises(ValueError, parse_resolver, "192.0.2.1:0")


class ReportTests(TestCase):
    async def test_domains_report(self) -> None:
        """The admin API's report: the configured resolver (``delivery.nameservers``)
        is asked, the files are read in a thread, and the result is JSON-able."""
        directory = Path(self.mktemp()).absolute()
        directory.mkdir(parents=True)
        world = await make_world(reactor, directory)
        self.addCleanup(world.dns.stop)
        self.addCleanup(world.stop)
        delivery = attrs.evolve(world.config.delivery, nameservers=tuple(world.dns.nameservers))
        config = attrs.evolve(world.config, delivery=delivery)
        report = await domains_report(config, reactor, deferToThread, overrides=world.overrides)
        self.assertEqual(json.loads(json.dumps(report)), report)
        self.assertTrue(report["ok"], report)
        self.assertEqual(report["counts"]["FAIL"], 0)
        self.assertIn(("mx", DOMAIN), {(c["check"], c["domain"]) for c in report["checks"]})
        self.assertNotEqual(world.dns.queries, [])
