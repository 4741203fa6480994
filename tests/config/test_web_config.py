"""``web.public_stats``: who may read /stats and /metrics."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.config import parse_config
from rail.reload import restart_needed
from tests.config.test_parse import BASE, _minimal, _problems


class PublicStatsConfigTests(SynchronousTestCase):
    def test_default_loopback(self) -> None:
        """Without a web section, /stats and /metrics answer admins and loopback."""
        self.assertEqual(parse_config(_minimal(), BASE).web.public_stats, "loopback")

    def test_values(self) -> None:
        """admin, loopback and public are accepted as written."""
        for value in ("admin", "loopback", "public"):
            config = parse_config(_minimal(web={"public_stats": value}), BASE)
            self.assertEqual(config.web.public_stats, value)

    def test_invalid(self) -> None:
        """Any other value, or an unknown key, is an error naming its path."""
        problems = _problems(_minimal(web={"public_stats": "everyone", "colour": 1}))
        self.assertEqual(len(problems), 2, problems)
        self.assertTrue(any(p.startswith("web.public_stats: ") for p in problems), problems)
        self.assertTrue(any(p.startswith("web.colour: ") for p in problems), problems)

    def test_reload_says_restart(self) -> None:
        """A SIGHUP with another public_stats logs that it takes effect after a restart
        (the site is built once)."""
        old = parse_config(_minimal(), BASE)
        new = parse_config(_minimal(web={"public_stats": "admin"}), BASE)
        self.assertEqual(restart_needed(old, new), ["web"])
