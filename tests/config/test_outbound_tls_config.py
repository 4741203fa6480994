"""``delivery.mta_sts`` and the smarthost's ``tls: implicit``, ``ca_file`` and ``auth``."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.config import parse_config
from rail.config.schema import MTASTS, SmarthostAuth
from rail.reload import restart_needed
from tests.config.test_parse import BASE, _minimal, _problems


class MTASTSConfigTests(SynchronousTestCase):
    def test_default_on(self) -> None:
        """Without the section MTA-STS is applied, with the system trust store, port 443."""
        self.assertEqual(parse_config(_minimal(), BASE).delivery.mta_sts, MTASTS())
        self.assertTrue(MTASTS().enabled)

    def test_values(self) -> None:
        """enabled, ca_file (relative to the config file) and port are read."""
        config = parse_config(
            _minimal(delivery={"mta_sts": {"enabled": False, "ca_file": "ca.pem", "port": 8443}}),
            BASE,
        )
        self.assertEqual(
            config.delivery.mta_sts, MTASTS(enabled=False, ca_file=BASE / "ca.pem", port=8443)
        )

    def test_invalid(self) -> None:
        """Wrong types, ports and unknown keys are errors naming their paths."""
        problems = _problems(
            _minimal(delivery={"mta_sts": {"enabled": "yes", "port": 0, "cache": 1}})
        )
        self.assertEqual(
            sorted(p.split(":")[0] for p in problems),
            ["delivery.mta_sts.cache", "delivery.mta_sts.enabled", "delivery.mta_sts.port"],
        )


class SmarthostConfigTests(SynchronousTestCase):
    def test_implicit_with_auth(self) -> None:
        """tls: implicit, a CA file and a login are read; paths are relative to the
        configuration file."""
        smarthost = {
            "host": "smtp.provider.example",
            "port": 465,
            "tls": "implicit",
            "ca_file": "/etc/ssl/provider.pem",
            "auth": {"username": "apikey", "password_file": "relay.password"},
        }
        config = parse_config(_minimal(delivery={"smarthost": smarthost}), BASE)
        relay = config.delivery.smarthost
        assert relay is not None
        self.assertEqual(
            (relay.tls, relay.port, relay.ca_file), ("implicit", 465, Path("/etc/ssl/provider.pem"))
        )
        self.assertEqual(
            relay.auth, SmarthostAuth(username="apikey", password_file=BASE / "relay.password")
        )

    def test_auth_needs_verified_tls(self) -> None:
        """auth with tls: opportunistic is refused: credentials never go in clear."""
        smarthost = {
            "host": "relay.example",
            "tls": "opportunistic",
            "auth": {"username": "u", "password_file": "p"},
        }
        problems = _problems(_minimal(delivery={"smarthost": smarthost}))
        self.assertEqual(
            problems,
            [
                "delivery.smarthost: auth needs tls: required or implicit"
                " (credentials never go in clear)"
            ],
        )

    def test_auth_fields(self) -> None:
        """Both auth fields are required; a user name with a control character is refused."""
        problems = _problems(
            _minimal(delivery={"smarthost": {"host": "r.example", "auth": {"username": "a\0b"}}})
        )
        self.assertEqual(
            sorted(p.split(":")[0] for p in problems),
            ["delivery.smarthost.auth.password_file", "delivery.smarthost.auth.username"],
        )

    def test_reload_says_restart(self) -> None:
        """Smarthost and MTA-STS settings are read at start: a reload says so."""
        old = parse_config(_minimal(), BASE)
        new = parse_config(
            _minimal(delivery={"smarthost": {"host": "r.example", "tls": "implicit", "port": 465}}),
            BASE,
        )
        self.assertEqual(restart_needed(old, new), ["delivery.smarthost"])
        sts = parse_config(_minimal(delivery={"mta_sts": {"enabled": False}}), BASE)
        self.assertEqual(restart_needed(old, sts), ["delivery.mta_sts"])
