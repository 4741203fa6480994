"""``rail certs`` and ``rail clients events`` against the shared database named by the
config's ``storage.dsn``: two hosts (two data directories, one DSN) see one registry."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.cli import run
from tests.support.postgres import postgres_dsn


class SharedCLITests(SynchronousTestCase):
    def setUp(self) -> None:
        dsn = postgres_dsn(self)  # type: ignore[arg-type]
        self.hosts = []
        for _host in range(2):
            directory = Path(self.mktemp()).absolute()
            directory.mkdir(parents=True)
            config = directory / "rail.yaml"
            config.write_text(
                "hostname: rail.test\n"
                "data_dir: data\n"
                "tls:\n  self_signed: true\n"
                f"storage:\n  backend: postgresql\n  dsn: {json.dumps(dsn)}\n"
            )
            self.hosts.append((directory, config))

    def rail(self, host: int, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        _directory, config = self.hosts[host]
        code = run([args[0], args[1], "--config", str(config), *args[2:]])
        return code, out.getvalue(), err.getvalue()

    def test_issue_on_one_host_list_and_revoke_on_the_other(self) -> None:
        """A certificate issued on host A is listed on host B, revoked there (the output
        says every node is notified), and listed as revoked on A; no registry file is
        made under either data directory."""
        out_dir = self.hosts[0][0]
        code, out, err = self.rail(
            0, "certs", "issue", "--name", "app", "--email", "app@rail.test",
            "--webhook", "https://app.example/hook", "--out", str(out_dir),
        )  # fmt: skip
        self.assertEqual((code, err), (0, ""))
        self.assertIn("issued app", out)
        code, out, err = self.rail(1, "certs", "list", "--json")
        self.assertEqual((code, err), (0, ""))
        [row] = json.loads(out)
        self.assertEqual((row["name"], row["status"]), ("app", "valid"))
        code, out, err = self.rail(1, "certs", "revoke", "app")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("every running node refuses it at once", out)
        code, out, _ = self.rail(0, "certs", "list", "--json")
        self.assertEqual(json.loads(out)[0]["status"], "revoked")
        for directory, _config in self.hosts:
            self.assertFalse((directory / "data" / "registry.sqlite3").exists())

    def test_events_and_webhook_secrets_shared(self) -> None:
        """Event subscriptions set on host A are shown on host B; the webhook public key
        and a client's secret printed at issue are the same on both hosts."""
        out_dir = self.hosts[0][0]
        code, out, err = self.rail(
            0, "certs", "issue", "--name", "app", "--email", "app@rail.test",
            "--webhook", "https://app.example/hook", "--out", str(out_dir),
        )  # fmt: skip
        self.assertEqual((code, err), (0, ""))
        keys = [line for line in out.splitlines() if "public key" in line]
        code, out, err = self.rail(0, "clients", "events", "app", "--events", "message.bounced")
        self.assertEqual((code, err), (0, ""), out)
        code, out, err = self.rail(1, "clients", "events", "app")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("message.bounced", out)
        code, out, err = self.rail(
            1, "certs", "issue", "--name", "other", "--email", "other@rail.test",
            "--webhook", "https://other.example/hook", "--out", str(self.hosts[1][0]),
        )  # fmt: skip
        self.assertEqual((code, err), (0, ""))
        self.assertEqual([line for line in out.splitlines() if "public key" in line], keys)
