"""The console as the server wires it: rotating a domain's DKIM keys from the page
changes the keys the running server signs with (the key store it shares with delivery,
re-read as on SIGHUP), then tells the DNS zones; the work runs in a thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from rail.config.parse import parse_config
from rail.console.issuing import IssueForm
from rail.console.wiring import _issue_problems, build_console
from rail.dkim.keys import KeyStore
from rail.dkim.rotation import Rotated


class _Wired(TestCase):
    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir(parents=True)
        self.config = parse_config(
            {
                "hostname": "rail.test",
                "data_dir": str(base / "data"),
                "tls": {"self_signed": True},
                "local_domains": ["rail.test"],
            },
            base,
        )
        self.keys = KeyStore.open(self.config.data_dir / "dkim")
        self.keys.ensure(["rail.test"], reactor.seconds() - 60)
        self.followed: list[str] = []
        console = build_console(
            self.config,
            reactor,
            None,
            None,
            None,
            None,
            keys=self.keys,
            after_rotation=lambda: self.followed.append("dns"),
        )
        self.rotate: Any = console._sources.rotate_dkim


class RotationWiringTests(_Wired):
    @inlineCallbacks
    def test_server_signs_with_the_new_keys(self) -> Any:
        """After a rotation the server's own key store signs with the new selectors at
        once (no reload needed), and the DNS zones are asked to follow."""
        before = self.keys.signing_keys("rail.test", reactor.seconds())
        assert before is not None
        rotated = yield self.rotate("rail.test")
        self.assertIsInstance(rotated, Rotated)
        now = self.keys.signing_keys("rail.test", reactor.seconds() + 1)
        assert now is not None
        self.assertEqual(now.ed25519_selector, rotated.generation.ed25519_selector)
        self.assertNotEqual(now.ed25519_selector, before.ed25519_selector)
        self.assertEqual(len(rotated.records), 2)
        self.assertTrue(rotated.records[0].startswith(f"{now.ed25519_selector}._domainkey."))
        self.assertEqual(self.followed, ["dns"])

    @inlineCallbacks
    def test_refused_domain(self) -> Any:
        """A domain that is not local comes back as the CLI's message; nothing follows."""
        outcome = yield self.rotate("example.net")
        self.assertEqual(outcome, "example.net: not a local domain (local: rail.test)")
        self.assertEqual(self.followed, [])


class IssueChecksTests(_Wired):
    def test_days(self) -> None:
        """Validity in days: not a whole number is refused as argparse words it for
        --days; zero or far too many days get the request check's validity message
        (never an overflow)."""
        form = IssueForm(name="shop", emails=("shop@rail.test",), key_type="ed25519")
        self.assertEqual(
            _issue_problems(self.config, attrs.evolve(form, days="abc")),
            ["--days: invalid int value: 'abc'"],
        )
        self.assertEqual(
            _issue_problems(self.config, attrs.evolve(form, days="²")),
            ["--days: invalid int value: '²'"],
        )
        for days in ("0", "99999999999999"):
            self.assertEqual(
                _issue_problems(self.config, attrs.evolve(form, days=days)),
                ["--validity: must be between 1 day and 3650 days"],
            )
        self.assertEqual(_issue_problems(self.config, attrs.evolve(form, days="30")), [])
