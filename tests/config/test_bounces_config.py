"""``bounces``: the signed return path and its bounce domains."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.config import parse_config
from rail.reload import restart_needed
from tests.config.test_parse import BASE, _minimal, _problems


class BouncesConfigTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """Without a bounces section, return paths are on under bounces.{domain}, and a
        report may be 1 MB."""
        bounces = parse_config(_minimal(), BASE).bounces
        self.assertEqual(
            (bounces.enabled, bounces.domain, bounces.max_report_size),
            (True, "bounces.{domain}", 1024 * 1024),
        )

    def test_values(self) -> None:
        """Valid values are taken (the template lower-cased)."""
        bounces = parse_config(
            _minimal(
                bounces={
                    "enabled": False,
                    "domain": "{domain}.RP.example.net",
                    "max_report_size": "64KB",
                }
            ),
            BASE,
        ).bounces
        self.assertEqual(
            (bounces.enabled, bounces.domain, bounces.max_report_size),
            (False, "{domain}.rp.example.net", 64 * 1024),
        )

    def test_invalid(self) -> None:
        """A template without {domain} as whole labels, a wrong type, a size out of range
        and an unknown key are each an error naming its path."""
        for bad in ("bounces", "b{domain}", "{domain}.{domain}", 7):
            problems = _problems(_minimal(bounces={"domain": bad}))
            self.assertEqual([p.split(":")[0] for p in problems], ["bounces.domain"], problems)
        problems = _problems(
            _minimal(bounces={"enabled": "yes", "max_report_size": "5MB", "colour": 1})
        )
        self.assertEqual(
            sorted(p.split(":")[0] for p in problems),
            ["bounces.colour", "bounces.enabled", "bounces.max_report_size"],
        )

    def test_reload_says_restart(self) -> None:
        """A SIGHUP with other bounces settings logs that they take effect after a restart."""
        old = parse_config(_minimal(), BASE)
        new = parse_config(_minimal(bounces={"enabled": False}), BASE)
        self.assertEqual(restart_needed(old, new), ["bounces"])
