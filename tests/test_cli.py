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

    def issue(
        self, name: str = "myapp", *extra: str, emails: tuple[str, ...] | None = None
    ) -> tuple[int, str, str]:
        """``rail certs issue``; without ``emails``, 'myapp' gets two ataca.io senders
        and any other name one address of its own."""
        if emails is None:
            emails = (
                ("noreply@ataca.io", "alerts@smtp.ataca.io")
                if name == "myapp"
                else (f"noreply@{name}.example",)
            )
        senders = [arg for email in emails for arg in ("--email", email)]
        return self.rail(
            "certs", "issue", "--config", str(self.config), "--name", name, *senders,
            "--webhook", "https://myapp.com/hooks/email", "--out", str(self.dir), *extra,
        )  # fmt: skip

    def listed(self) -> list[dict[str, object]]:
        code, out, err = self.rail("certs", "list", "--config", str(self.config), "--json")
        self.assertEqual(code, 0, err)
        rows: list[dict[str, object]] = json.loads(out)
        return rows


class ConfigCheckTests(_CLITestCase):
    def test_valid(self) -> None:
        """A valid file prints ok and exits 0."""
        code, out, err = self.rail("config-check", "--config", str(self.config))
        self.assertEqual((code, err), (0, ""))
        self.assertIn("ok", out)

    def test_reports_address_conflicts(self) -> None:
        """A registry where two clients' valid certificates hold one address (issued with
        the override, or by an older Rail): config-check still exits 0 but warns, one
        line per address, naming both holders and who gets the inbound mail."""
        self.assertEqual(self.issue("app", emails=("app@rail.test",))[0], 0)
        self.issue("two", "--allow-shared-address", emails=("app@rail.test",))
        code, out, err = self.rail("config-check", "--config", str(self.config))
        self.assertEqual(code, 0, err)
        self.assertIn("ok (1 warning)", out)
        [line] = err.splitlines()
        self.assertTrue(line.startswith("rail: warning: app@rail.test is in valid"), line)
        self.assertIn("'app' (serial ", line)
        self.assertIn("'two' (serial ", line)
        self.assertIn("inbound mail for it goes to 'app', issued first", line)
        self.rail("certs", "revoke", "--config", str(self.config), "two")
        code, out, err = self.rail("config-check", "--config", str(self.config))
        self.assertEqual((code, err), (0, ""))

    def test_unreadable_registry_is_a_warning(self) -> None:
        """A registry that cannot be opened does not make a valid file invalid: exit 0,
        and a warning says the conflicts were not checked."""
        (self.dir / "data").mkdir()
        (self.dir / "data" / "registry.sqlite3").write_bytes(b"not a database" * 100)
        code, out, err = self.rail("config-check", "--config", str(self.config))
        self.assertEqual(code, 0, err)
        self.assertTrue(err.startswith("rail: warning: address conflicts not checked: "), err)

    def test_warns_http_loopback_without_private(self) -> None:
        """allow_http_loopback without allow_private is valid but does nothing: warned."""
        self.config.write_text(
            "hostname: rail.test\ntls:\n  self_signed: true\n"
            "webhooks:\n  allow_http_loopback: true\n"
        )
        code, out, err = self.rail("config-check", "--config", str(self.config))
        self.assertEqual(code, 0)
        self.assertIn("webhooks.allow_http_loopback has no effect", err)

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

    def test_address_of_another_client_refused(self) -> None:
        """--email an address another client's valid certificate holds: exit 1, one line
        per such address naming the holder and the override; nothing is issued."""
        self.assertEqual(self.issue("app", emails=("app@rail.test", "info@rail.test"))[0], 0)
        code, out, err = self.issue("two", emails=("app@rail.test", "two@rail.test"))
        self.assertEqual(code, 1, err)
        [line] = err.splitlines()
        self.assertTrue(line.startswith("rail: --email 'app@rail.test': already held by"), line)
        self.assertIn("'app' (serial ", line)
        self.assertIn("--allow-shared-address", line)
        self.assertEqual(out, "")
        self.assertEqual([row["name"] for row in self.listed()], ["app"])
        self.assertFalse((self.dir / "two.crt").exists())

    def test_shared_address_override_warns(self) -> None:
        """--allow-shared-address issues anyway, with a warning on stderr saying who
        keeps the inbound mail (the earlier certificate's client)."""
        self.assertEqual(self.issue("app", emails=("app@rail.test",))[0], 0)
        code, out, err = self.issue("two", "--allow-shared-address", emails=("app@rail.test",))
        self.assertEqual(code, 0, err)
        [line] = err.splitlines()
        self.assertTrue(line.startswith("rail: warning: app@rail.test is shared"), line)
        self.assertIn("its inbound mail goes to 'app'", line)
        self.assertIn("issued two", out)
        self.assertEqual([row["status"] for row in self.listed()], ["valid", "valid"])

    def test_rotation_keeps_identity(self) -> None:
        """Rotation: a second certificate for the same name and addresses is issued
        while the first is valid (a note names the old serial), both are valid at once,
        revoking the old one by serial leaves the new one, and the client's webhook
        secret is the same throughout (it depends on the name only)."""
        code, out, err = self.issue()
        self.assertEqual(code, 0, err)
        secret = next(line for line in out.splitlines() if "secret" in line)
        [old] = self.listed()
        new_dir = self.dir / "new"
        new_dir.mkdir()
        code, out, err = self.issue("myapp", "--out", str(new_dir))
        self.assertEqual((code, err), (0, ""))
        self.assertIn(secret, out.splitlines())
        self.assertIn(f"has other valid certificates (serial {old['serial']})", out)
        rows = self.listed()
        self.assertEqual([(r["name"], r["status"]) for r in rows], [("myapp", "valid")] * 2)
        code, out, err = self.rail("certs", "revoke", "--config", str(self.config), old["serial"])
        self.assertEqual(code, 0, err)
        self.assertEqual(
            [(r["serial"], r["status"]) for r in self.listed()],
            [(old["serial"], "revoked"), (rows[1]["serial"], "valid")],
        )
        code, out, err = self.rail("config-check", "--config", str(self.config))
        self.assertEqual((code, err), (0, ""))

    def test_http_webhook_needs_allow_private(self) -> None:
        """An http:// loopback webhook is refused (exit 2) when allow_http_loopback is on
        but allow_private is off: Rail would never POST to it."""
        self.config.write_text(
            "hostname: rail.test\n"
            "data_dir: data\n"
            "tls:\n  self_signed: true\n"
            "webhooks:\n  allow_http_loopback: true\n"
        )
        code, out, err = self.rail(
            "certs", "issue", "--config", str(self.config), "--name", "dev",
            "--email", "dev@rail.test", "--webhook", "http://127.0.0.1:8088/inbound",
            "--out", str(self.dir),
        )  # fmt: skip
        self.assertEqual(code, 2, err)
        self.assertIn("webhooks.allow_private", err)

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


class ModuleTests(SynchronousTestCase):
    def test_python_m_rail_cli_runs_the_command(self) -> None:
        """``python -m rail.cli`` runs the command like the ``rail`` script (it used to
        exit 0 without doing anything)."""
        import subprocess

        done = subprocess.run(
            [sys.executable, "-m", "rail.cli", "--version"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertTrue(done.stdout.startswith(b"rail "), done.stdout)
