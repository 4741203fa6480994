"""The ``rail`` command: exit codes, one-line errors, and the certificate lifecycle."""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.cli import run


class _CLITestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir(parents=True)
        self.config = self.dir / "rail.yaml"
        self.config.write_text(
            "hostname: rail.test\n"
            "data_dir: data\n"
            "tls:\n  self_signed: true\n"
            "webhooks:\n  allow_http_loopback: true\n  allow_private: true\n"
        )

    def rail(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        code = run(list(args))
        return code, out.getvalue(), err.getvalue()

    def issue(self, name: str = "myapp", *extra: str) -> tuple[int, str, str]:
        return self.rail(
            "certs", "issue", "--config", str(self.config), "--name", name,
            "--email", "noreply@ataca.io", "--email", "alerts@smtp.ataca.io",
            "--webhook", "https://myapp.com/hooks/email", "--out", str(self.dir), *extra,
        )  # fmt: skip


class ConfigCheckTests(_CLITestCase):
    def test_valid(self) -> None:
        """A valid file prints ok and exits 0."""
        code, out, err = self.rail("config-check", "--config", str(self.config))
        self.assertEqual((code, err), (0, ""))
        self.assertIn("ok", out)

    def test_three_problems(self) -> None:
        """Unknown key, wrong type and bad duration: three path-qualified lines, exit 2."""
        self.config.write_text(
            "hostname: rail.test\n"
            "tls:\n  self_signed: true\n"
            "colour: blue\n"
            "local_domains: 7\n"
            "shutdown:\n  drain_delay: soon\n"
        )
        code, out, err = self.rail("config-check", "--config", str(self.config))
        self.assertEqual(code, 2)
        lines = err.splitlines()
        self.assertEqual(len(lines), 3, err)
        self.assertTrue(lines[0].startswith("colour: unknown key"), lines[0])
        self.assertTrue(lines[1].startswith("local_domains: "), lines[1])
        self.assertTrue(lines[2].startswith("shutdown.drain_delay: "), lines[2])

    def test_missing_file(self) -> None:
        """A missing file is one line naming it, exit 2."""
        code, out, err = self.rail("config-check", "--config", str(self.dir / "nope.yaml"))
        self.assertEqual(code, 2)
        self.assertEqual(len(err.splitlines()), 1)
        self.assertIn("nope.yaml", err)

    def test_usage_error_is_one_line(self) -> None:
        """Bad usage is one line on stderr and exit 2, never argparse's usage dump."""
        code, out, err = self.rail("certs", "frobnicate")
        self.assertEqual(code, 2)
        self.assertEqual(len(err.splitlines()), 1, err)


class CertsTests(_CLITestCase):
    def test_issue_writes_files(self) -> None:
        """certs issue writes NAME.crt and a 0600 NAME.key and records the certificate."""
        code, out, err = self.issue()
        self.assertEqual(code, 0, err)
        key = self.dir / "myapp.key"
        self.assertEqual(stat.S_IMODE(key.stat().st_mode), 0o600)
        code, out, err = self.rail(
            "certs", "inspect", "--config", str(self.config), str(self.dir / "myapp.crt")
        )
        info = json.loads(out)
        self.assertEqual(info["client_id"], "myapp")
        self.assertEqual(info["senders"], ["noreply@ataca.io", "alerts@smtp.ataca.io"])
        self.assertEqual(info["webhook"], "https://myapp.com/hooks/email")
        self.assertIs(info["valid"], True)

    def test_issue_prints_webhook_verification_keys(self) -> None:
        """For a client with a webhook, certs issue prints Rail's webhook public key and
        the client's own v1 secret, the same ones Rail signs with."""
        from rail.config import load_config
        from rail.webhooks.key import load_or_create_key

        code, out, err = self.issue()
        self.assertEqual(code, 0, err)
        key = load_or_create_key(load_config(self.config).data_dir)
        self.assertIn(f"public key  {key.public_text}", out)
        self.assertIn(f"secret      {key.client_secret_text('myapp')}", out)

    def test_key_types(self) -> None:
        """--key-type selects ecdsa-p256 or rsa2048."""
        for kind in ("ecdsa-p256", "rsa2048"):
            code, out, err = self.issue(f"app-{kind}", "--key-type", kind, "--days", "10")
            self.assertEqual(code, 0, err)
            code, out, err = self.rail(
                "certs", "inspect", "--config", str(self.config), str(self.dir / f"app-{kind}.crt")
            )
            self.assertEqual(json.loads(out)["key_type"], kind)

    def test_duplicate_name_refused(self) -> None:
        """A second valid certificate with the same name is refused; after revoke it is not."""
        self.assertEqual(self.issue()[0], 0)
        code, out, err = self.issue("myapp", "--force")
        self.assertEqual(code, 1)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("myapp", err)
        self.assertEqual(self.rail("certs", "revoke", "--config", str(self.config), "myapp")[0], 0)
        self.assertEqual(self.issue("myapp", "--force")[0], 0)

    def test_output_path_is_a_directory(self) -> None:
        """An output path that is a directory is refused before anything is recorded."""
        (self.dir / "myapp.key").mkdir()
        code, out, err = self.issue("myapp", "--force")
        self.assertEqual(code, 2)
        self.assertIn("myapp.key: exists and is not a regular file", err)
        code, out, err = self.rail("certs", "list", "--config", str(self.config), "--json")
        self.assertEqual(json.loads(out), [])

    def test_existing_files_not_overwritten(self) -> None:
        """Issuing over existing files is refused unless --force."""
        (self.dir / "myapp.key").write_text("precious")
        code, out, err = self.issue()
        self.assertEqual(code, 2)
        self.assertIn("myapp.key: already exists", err)
        self.assertEqual((self.dir / "myapp.key").read_text(), "precious")

    def test_bad_inputs_one_line_each(self) -> None:
        """Each bad input is its own stderr line naming it; nothing is issued."""
        code, out, err = self.rail(
            "certs", "issue", "--config", str(self.config), "--name", "bad name",
            "--email", "not-an-address", "--webhook", "http://example.com/hook",
            "--out", str(self.dir),
        )  # fmt: skip
        self.assertEqual(code, 2)
        lines = err.splitlines()
        self.assertEqual(len(lines), 3, err)
        self.assertIn("--name", lines[0])
        self.assertIn("not-an-address", lines[1])
        self.assertIn("--webhook", lines[2])
        self.assertFalse((self.dir / "bad name.crt").exists())

    def test_list_and_revoke_by_serial(self) -> None:
        """certs list shows status; revoke by serial works; unknown serial fails with exit 1."""
        self.issue()
        code, out, err = self.rail("certs", "list", "--config", str(self.config), "--json")
        [row] = json.loads(out)
        self.assertEqual((row["name"], row["status"]), ("myapp", "valid"))
        code, out, err = self.rail("certs", "revoke", "--config", str(self.config), row["serial"])
        self.assertEqual(code, 0, err)
        code, out, err = self.rail("certs", "list", "--config", str(self.config))
        self.assertIn("revoked", out)
        code, out, err = self.rail("certs", "revoke", "--config", str(self.config), "deadbeef")
        self.assertEqual(code, 1)
        self.assertEqual(len(err.splitlines()), 1)

    def test_inspect_garbage(self) -> None:
        """Inspecting a non-certificate is one line naming the file, exit 1."""
        self.issue()
        junk = self.dir / "junk.crt"
        junk.write_text("hello")
        code, out, err = self.rail("certs", "inspect", "--config", str(self.config), str(junk))
        self.assertEqual(code, 1)
        self.assertIn("junk.crt", err)

    def test_corrupt_ca(self) -> None:
        """A corrupt CA key makes issue fail with exit 1 and one line naming the file."""
        self.issue()
        (self.dir / "data" / "ca" / "ca.key").write_text("garbage")
        code, out, err = self.issue("other")
        self.assertEqual(code, 1)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("ca.key", err)


class ReadOnlyTests(_CLITestCase):
    def test_inspect_and_revoke_need_an_existing_ca(self) -> None:
        """inspect and revoke never create a CA; without one they fail with exit 1."""
        junk = self.dir / "x.crt"
        junk.write_text("hello")
        for args in (("certs", "revoke", "--config", str(self.config), "app"),):
            code, out, err = self.rail(*args)
            self.assertEqual(code, 1)
            self.assertIn("ca.crt: missing", err)
        self.assertFalse((self.dir / "data" / "ca" / "ca.key").exists())


class InitTests(_CLITestCase):
    def test_bad_hostname_or_port_writes_nothing(self) -> None:
        """init --dev refuses a bad hostname or port (exit 2) before writing anything."""
        target = self.dir / "dev"
        code, out, err = self.rail("init", "--dev", str(target), "--hostname", "bad host")
        self.assertEqual(code, 2)
        self.assertTrue(err.startswith("rail: hostname: "), err)
        code, out, err = self.rail("init", "--dev", str(target), "--https-port", "99999")
        self.assertEqual(code, 2)
        self.assertIn("--https-port", err)
        self.assertFalse(target.exists())

    def test_init_dev_is_idempotent(self) -> None:
        """init --dev creates config, CA, server and sample client; a rerun reuses them."""
        target = self.dir / "dev"
        code, out, err = self.rail("init", "--dev", str(target))
        self.assertEqual(code, 0, err)
        for name in ("rail.yaml", "ca.crt", "app.crt", "app.key", "data/tls/server.crt"):
            self.assertTrue((target / name).exists(), name)
        self.assertIn("twistd -n --pidfile= rail --config", out)
        before = (target / "app.crt").read_bytes()
        code, out, err = self.rail("init", "--dev", str(target))
        self.assertEqual(code, 0, err)
        self.assertIn("reusing", out)
        self.assertEqual((target / "app.crt").read_bytes(), before)
        code, out, err = self.rail("config-check", "--config", str(target / "rail.yaml"))
        self.assertEqual(code, 0, err)
