"""``rail dns records`` and the zones built from a configuration and data directory."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase, TestCase

from rail.cli import run
from rail.config import load_config
from rail.dkim.keys import KeyStore
from rail.dns.service import build_dns
from rail.dns.sources import load_zones, serial_path
from tests.dns.helpers import UDPClient, query_bytes

_YAML = """\
hostname: mail.example.com
data_dir: data
local_domains: [example.com, example.org]
tls:
  self_signed: true
listen:
  https: null
  submission: null
  inbound: null
  http: null
  dns: "tcp:0:interface=127.0.0.1"
dns:
  ipv4: ["192.0.2.10"]
  ttl: 5m
"""


def _write_config(directory: Path, text: str = _YAML) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "rail.yaml"
    path.write_text(text)
    return path


class RecordsCommandTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.config = _write_config(Path(self.mktemp()).absolute())

    def rail(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        return run(list(args)), out.getvalue(), err.getvalue()

    def test_every_domain(self) -> None:
        """Without --domain, every local domain's zone is printed, DKIM keys included."""
        code, out, err = self.rail("dns", "records", "--config", str(self.config))
        self.assertEqual((code, err), (0, ""))
        self.assertIn("$ORIGIN example.com.\n", out)
        self.assertIn("$ORIGIN example.org.\n", out)
        self.assertRegex(out, r"\._domainkey\.example\.org\.\t300\tIN\tTXT\t\"v=DKIM1; k=ed25519")
        self.assertIn("mail.example.com.\t300\tIN\tA\t192.0.2.10\n", out)

    def test_one_domain_read_only_serial(self) -> None:
        """--domain prints that zone only; the serial is the same on each run and the
        state file is not written by the command."""
        args = ("dns", "records", "--config", str(self.config), "--domain", "EXAMPLE.org")
        code, first, _ = self.rail(*args)
        self.assertEqual(code, 0)
        self.assertNotIn("example.com.\t300\tIN\tSOA", first)
        self.assertIn("example.org.\t300\tIN\tSOA", first)
        self.assertFalse(serial_path(self.config.parent / "data").exists())

    def test_unknown_domain(self) -> None:
        """A domain that is not local fails with exit code 1 and one line."""
        code, out, err = self.rail(
            "dns", "records", "--config", str(self.config), "--domain", "x.net"
        )
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, "rail: x.net: not a local domain (local: example.com, example.org)\n")

    def test_invalid_config(self) -> None:
        """An invalid configuration exits 2."""
        _write_config(self.config.parent, _YAML + "colour: blue\n")
        code, _, err = self.rail("dns", "records", "--config", str(self.config))
        self.assertEqual(code, 2)
        self.assertIn("colour", err)


class LoadZonesTests(SynchronousTestCase):
    def test_serials_persist(self) -> None:
        """The server's zones keep their serials across rebuilds (and restarts), and a
        changed zone gets a larger one."""
        config = load_config(_write_config(Path(self.mktemp()).absolute()))
        keys = KeyStore.open(config.data_dir / "dkim")
        keys.ensure(["example.com", "example.org", config.hostname], 1000.0)
        first = {z.origin: z.serial for z in load_zones(config, keys, 2000.0)}
        again = {
            z.origin: z.serial
            for z in load_zones(config, KeyStore.open(config.data_dir / "dkim"), 3000.0)
        }
        self.assertEqual(first, again)
        keys.rotate("example.org", 4000.0)
        rotated = {z.origin: z.serial for z in load_zones(config, keys, 5000.0)}
        self.assertEqual(rotated["example.com"], first["example.com"])
        self.assertEqual(rotated["example.org"], 5000)


class BuildDNSTests(TestCase):
    timeout = 20

    async def test_build_and_refresh(self) -> None:
        """build_dns serves the configured zones; refresh(config) applies a reload, once
        the zones are built in the reactor's thread pool."""
        path = _write_config(Path(self.mktemp()).absolute())
        config = load_config(path)
        keys = KeyStore.open(config.data_dir / "dkim")
        service = build_dns(config, reactor, keys, refresh_interval=None)
        assert service is not None
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        client = UDPClient(service.port)
        port = reactor.listenUDP(0, client, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        response = await client.ask(query_bytes("example.org", dns.MX))
        self.assertEqual(response.answers[0].ttl, 300)
        _write_config(path.parent, _YAML.replace("ttl: 5m", "ttl: 1m"))
        await service.refresh(load_config(path))
        response = await client.ask(query_bytes("example.org", dns.MX))
        self.assertEqual(response.answers[0].ttl, 60)

    def test_disabled(self) -> None:
        """listen.dns: null builds no service."""
        path = _write_config(
            Path(self.mktemp()).absolute(),
            _YAML.replace('dns: "tcp:0:interface=127.0.0.1"', "dns: null"),
        )
        config: Any = load_config(path)
        self.assertIsNone(build_dns(config, reactor, KeyStore.open(config.data_dir / "dkim")))
