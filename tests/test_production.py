"""``rail init --production`` and ``rail --version``: a production config derived, not asked."""

from __future__ import annotations

import io
import socket
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rail import prodcli
from rail.cli import run
from rail.config import load_config
from rail.config.listen import ListenSpec
from rail.config.production import LETS_ENCRYPT
from rail.prodsetup import SetupError, fqdn_problem, init_production, public_addresses


def _no_addresses(hostname: str) -> tuple[list[str], list[str]]:
    return [], []


class FQDNTests(SynchronousTestCase):
    def test_public_fqdn_accepted(self) -> None:
        """A public, fully qualified name (ASCII or IDN) is a production host name."""
        for name in ("mail.example.com", "MX1.Mail.Example.org.", "post.bücher.de"):
            self.assertIsNone(fqdn_problem(name), name)

    def test_not_fqdn_refused(self) -> None:
        """Single labels, private top-level names, IP addresses and invalid names are
        refused, each with a reason naming the name."""
        cases = {
            "vm": "not fully qualified",
            "localhost": "not fully qualified",
            "host.localdomain": "not a public name",
            "rail.test": "not a public name",
            "printer.local": "not a public name",
            "192.0.2.1": "IP address",
            "bad_name.example.com": "not a DNS host name",
            "": "not a DNS host name",
        }
        for name, reason in cases.items():
            problem = fqdn_problem(name)
            assert problem is not None, name
            self.assertIn(reason, problem)
            self.assertIn(repr(name), problem)


class PublicAddressTests(SynchronousTestCase):
    def test_only_global_addresses(self) -> None:
        """Of the addresses the name resolves to, only globally routable ones are kept,
        each once, IPv4 and IPv6 apart."""
        infos = [
            (socket.AF_INET, 0, 0, "", ("8.8.4.4", 0)),
            (socket.AF_INET, 0, 0, "", ("8.8.4.4", 0)),
            (socket.AF_INET, 0, 0, "", ("127.0.1.1", 0)),
            (socket.AF_INET, 0, 0, "", ("10.0.0.7", 0)),
            (socket.AF_INET6, 0, 0, "", ("2606:4700::1111", 0, 0, 0)),
            (socket.AF_INET6, 0, 0, "", ("fe80::1", 0, 0, 0)),
        ]
        self.patch(socket, "getaddrinfo", lambda *args, **kwargs: infos)
        self.assertEqual(public_addresses("mail.example.com"), (["8.8.4.4"], ["2606:4700::1111"]))

    def test_unresolvable(self) -> None:
        """A name that does not resolve has no public addresses (not an error)."""

        def fail(*args: Any, **kwargs: Any) -> Any:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        self.patch(socket, "getaddrinfo", fail)
        self.assertEqual(public_addresses("mail.example.com"), ([], []))


class InitProductionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.path = self.dir / "etc" / "rail.yaml"

    def test_derived_from_fqdn(self) -> None:
        """Without --hostname the machine's FQDN is used; the config listens on every IPv4
        address at the standard ports, gets its certificate from Let's Encrypt, keeps data
        in /var/lib/rail and publishes the name's public addresses."""
        setup = init_production(
            self.path,
            fqdn=lambda: "mail.example.com",
            addresses=lambda name: (["192.0.2.10"], ["2001:db8::10"]),
        )
        config = load_config(self.path)
        self.assertEqual(setup.config, config)
        self.assertEqual(config.hostname, "mail.example.com")
        self.assertEqual(config.data_dir, Path("/var/lib/rail"))

        def every(port: int) -> ListenSpec:
            return ListenSpec(kind="tcp", port=port, interface="0.0.0.0")  # noqa: S104

        listen = config.listen
        self.assertEqual(
            (listen.https, listen.submission, listen.inbound, listen.http, listen.dns),
            (every(443), every(465), every(25), every(80), None),
        )
        self.assertEqual(config.tls.mode, "acme")
        assert config.tls.acme is not None
        self.assertEqual((config.tls.acme.directory, config.tls.acme.email), (LETS_ENCRYPT, None))
        self.assertEqual((config.dns.ipv4, config.dns.ipv6), (("192.0.2.10",), ("2001:db8::10",)))
        self.assertEqual(self.path.stat().st_mode & 0o777, 0o644)

    def test_machine_name_not_fqdn(self) -> None:
        """A machine whose name is not a public FQDN is refused with a message that says
        to pass --hostname; nothing is written."""
        with self.assertRaises(SetupError) as caught:
            init_production(self.path, fqdn=lambda: "vm", addresses=_no_addresses)
        self.assertIn("'vm' is not fully qualified", str(caught.exception))
        self.assertIn("--hostname", str(caught.exception))
        self.assertFalse(self.path.exists())

    def test_existing_file_kept(self) -> None:
        """An existing config is not replaced without ``force``."""
        self.path.parent.mkdir(parents=True)
        self.path.write_text("mine")
        with self.assertRaises(SetupError):
            init_production(self.path, "mail.example.com", addresses=_no_addresses)
        self.assertEqual(self.path.read_text(), "mine")
        init_production(self.path, "mail.example.com", addresses=_no_addresses, force=True)
        self.assertEqual(load_config(self.path).hostname, "mail.example.com")


class CLITests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.config = self.dir / "rail.yaml"
        # No test may ask the network: the host's own DNS records are made up here.
        self.patch(prodcli, "public_addresses", lambda name: (["192.0.2.25"], []))
        self.patch(prodcli, "getfqdn", lambda: "localhost")

    def rail(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        code = run(list(args))
        return code, out.getvalue(), err.getvalue()

    def test_init_production_then_config_check(self) -> None:
        """``rail init --production`` with every option writes a config that
        ``rail config-check`` accepts, and prints what it derived."""
        code, out, err = self.rail(
            "init", "--production", "--hostname", "mail.example.com", "--config",
            str(self.config), "--data-dir", "/srv/rail", "--acme-email", "ops@example.com",
            "--domain", "example.com", "--domain", "Example.ORG",
        )  # fmt: skip
        self.assertEqual(code, 0, err)
        self.assertIn("192.0.2.25", out)
        code, out, err = self.rail("config-check", "--config", str(self.config))
        self.assertEqual((code, out, err), (0, f"{self.config}: ok\n", ""))
        config = load_config(self.config)
        self.assertEqual(config.local_domains, ("example.com", "example.org"))
        self.assertEqual(config.data_dir, Path("/srv/rail"))
        assert config.tls.acme is not None
        self.assertEqual(config.tls.acme.email, "ops@example.com")

    def test_hostname_not_derivable(self) -> None:
        """Where the machine's name is not a FQDN and no --hostname is given: exit 1 with
        one line saying so."""
        code, out, err = self.rail("init", "--production", "--config", str(self.config))
        self.assertEqual(code, 1)
        self.assertEqual(
            err,
            "rail init: this machine's name 'localhost' is not fully qualified (a name like"
            " mail.example.com is); give the public name with --hostname\n",
        )
        self.assertFalse(self.config.exists())

    def test_dev_options_refused(self) -> None:
        """Port options belong to --dev; --production refuses them (exit 2), and --dev
        refuses the production-only options."""
        code, _, err = self.rail(
            "init", "--production", "--hostname", "mail.example.com", "--https-port", "8443",
            "--config", str(self.config),
        )  # fmt: skip
        self.assertEqual(code, 2, err)
        code, _, err = self.rail("init", "--dev", str(self.dir / "dev"), "--domain", "a.example")
        self.assertEqual(code, 2, err)
        self.assertFalse(self.config.exists())

    def test_twistd_plugin_version(self) -> None:
        """``twistd rail --version`` prints Rail's and Twisted's versions and exits 0."""
        from rail.tap import Options
        from twisted import __version__ as twisted_version

        out = io.StringIO()
        self.patch(sys, "stdout", out)
        with self.assertRaises(SystemExit) as caught:
            Options().parseOptions(["--version"])
        self.assertEqual(caught.exception.code, 0)
        self.assertEqual(out.getvalue(), f"rail {version('rail')} (Twisted {twisted_version})\n")

    def test_version(self) -> None:
        """``rail --version`` prints the installed distribution's version and exits 0."""
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        with self.assertRaises(SystemExit) as caught:
            run(["--version"])
        self.assertEqual(caught.exception.code, 0)
        self.assertEqual(out.getvalue(), f"rail {version('rail')}\n")


class ProductionLimitsTests(SynchronousTestCase):
    def test_every_client_has_sending_limits(self) -> None:
        """The production configuration bounds every client's sending (a leaked
        certificate cannot send without limit)."""
        import yaml

        from rail.config.parse import parse_config
        from rail.config.production import production_config_yaml

        text = production_config_yaml("mail.example.com", ipv4=["192.0.2.1"])
        config = parse_config(yaml.safe_load(text), Path(self.mktemp()))
        self.assertEqual(
            dict(config.clients_default.limits),
            {
                "messages_per_minute": 600,
                "messages_per_hour": 10_000,
                "messages_per_day": 50_000,
                "recipients_per_day": 100_000,
            },
        )
