"""``rail config-check`` refuses forward targets that come back to Rail: in the
configured local domains, and in domains that only certificates make local."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from twisted.trial.unittest import TestCase

from rail.cli import run

_BASE = (
    "hostname: rail.test\ndata_dir: data\nlocal_domains: [rail.test]\ntls:\n  self_signed: true\n"
)


class ConfigCheckTests(TestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp())
        self.dir.mkdir()
        self.config = self.dir / "rail.yaml"

    def rail(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        return run(list(args)), out.getvalue(), err.getvalue()

    def check(self, routes: str) -> tuple[int, str, str]:
        self.config.write_text(_BASE + "inbound:\n  routes:\n" + routes)
        return self.rail("config-check", "--config", str(self.config))

    def test_outside_target_ok(self) -> None:
        """Forwarding to a mailbox elsewhere is valid."""
        code, out, err = self.check('    - {match: "a@rail.test", forward: [b@mailbox.example]}\n')
        self.assertEqual((code, err), (0, ""))

    def test_loop_refused(self) -> None:
        """A target a route takes is a loop: exit 2, one line naming its path."""
        code, out, err = self.check(
            '    - {match: "*@rail.test", forward: [b@mailbox.example, c@rail.test]}\n'
        )
        self.assertEqual(code, 2)
        self.assertEqual(
            err.splitlines(),
            ["inbound.routes[0].forward[1]: c@rail.test routes back to Rail (a forwarding loop)"],
        )

    def test_certificate_domain(self) -> None:
        """A domain made local by a certificate's address counts too: a target there
        that no route takes is refused."""
        self.config.write_text(_BASE)
        code, _, err = self.rail(
            "certs", "issue", "--config", str(self.config), "--name", "app",
            "--email", "app@certs.example", "--webhook", "https://app.example/hook",
            "--out", str(self.dir),
        )  # fmt: skip
        self.assertEqual(code, 0, err)
        code, out, err = self.check('    - {match: "a@rail.test", forward: [x@certs.example]}\n')
        self.assertEqual(code, 2)
        self.assertIn("x@certs.example is in Rail's local domain certs.example", err)
        code, out, err = self.check('    - {match: "a@rail.test", forward: [app@certs.example]}\n')
        self.assertIn("app@certs.example routes back to Rail", err)
