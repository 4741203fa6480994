"""``rail dkim show`` and ``rail dkim rotate``: output, exit codes and one-line errors."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.cli import run
from rail.dkim.keys import KeyStore
from rail.dkim.sign import sign
from rail.store.schema import open_writable
from tests.dkim.helpers import MESSAGE, add_message, verify_each

_LINE = re.compile(r'(\S+)\._domainkey\.(\S+)\. 3600 IN TXT ((?:"[^"]*" ?)+)')


def _records(out: str) -> dict[tuple[str, str], str]:
    """(selector, domain) -> TXT value from zone-file lines; comment lines are skipped."""
    records = {}
    for line in out.splitlines():
        if line.startswith(";"):
            continue
        match = _LINE.fullmatch(line)
        assert match is not None, line
        strings = re.findall(r'"([^"]*)"', match.group(3))
        assert all(len(s.encode()) <= 255 for s in strings), line
        records[match.group(1), match.group(2)] = "".join(strings)
    return records


class _DKIMCLITestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir(parents=True)
        self.config = self.dir / "rail.yaml"
        self.config.write_text(
            "hostname: rail.test\n"
            "data_dir: data\n"
            "local_domains: [example.com]\n"
            "tls:\n  self_signed: true\n"
        )
        self.data = self.dir / "data"

    def rail(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        code = run([*args, "--config", str(self.config)])
        return code, out.getvalue(), err.getvalue()


class ShowTests(_DKIMCLITestCase):
    def test_creates_and_prints(self) -> None:
        """On a fresh set-up, show creates the keys and prints one ed25519 and one rsa
        record per local domain, whose keys verify what the server would sign."""
        code, out, err = self.rail("dkim", "show")
        self.assertEqual((code, err), (0, ""))
        records = _records(out)
        self.assertEqual(len(records), 2)
        (ed,) = [key for key in records if key[0].endswith("e")]
        (rsa,) = [key for key in records if key[0].endswith("r")]
        self.assertTrue(records[ed].startswith("v=DKIM1; k=ed25519; p="))
        self.assertTrue(records[rsa].startswith("v=DKIM1; k=rsa; p="))
        self.assertEqual((ed[1], rsa[1]), ("example.com", "example.com"))
        self.assertGreater(out.count('" "'), 0)  # the RSA value needs two strings

        store = KeyStore.open(self.data / "dkim")
        keys = store.signing_keys("example.com", 0.0)
        assert keys is not None
        table = {
            f"{selector}._domainkey.{domain}.".encode(): value.encode()
            for (selector, domain), value in records.items()
        }
        results = verify_each(sign(MESSAGE, keys, 0.0) + MESSAGE, table)
        self.assertEqual(results, [("rsa-sha256", True), ("ed25519-sha256", True)])

    def test_stable(self) -> None:
        """Showing again prints the same records: keys are made once."""
        first = self.rail("dkim", "show")
        self.assertEqual(self.rail("dkim", "show"), first)

    def test_one_domain(self) -> None:
        """show DOMAIN prints that domain's records only, in any case."""
        code, out, err = self.rail("dkim", "show", "EXAMPLE.com")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual({domain for _, domain in _records(out)}, {"example.com"})

    def test_certificate_domains(self) -> None:
        """Domains of issued client certificates are local domains too."""
        code, _, err = run_issue(self)
        self.assertEqual((code, err), (0, ""))
        code, out, err = self.rail("dkim", "show")
        self.assertEqual((code, err), (0, ""))
        domains = sorted({domain for _, domain in _records(out)})
        self.assertEqual(domains, ["ataca.io", "example.com"])

    def test_not_local(self) -> None:
        """A domain that is not local fails with one line naming it, exit 1, and
        creates nothing."""
        code, out, err = self.rail("dkim", "show", "elsewhere.example")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("elsewhere.example", err)
        self.assertFalse((self.data / "dkim" / "elsewhere.example").exists())

    def test_no_local_domains(self) -> None:
        """Without any local domain there is nothing to show: one line, exit 1."""
        self.config.write_text("hostname: rail.test\ndata_dir: data\ntls:\n  self_signed: true\n")
        code, out, err = self.rail("dkim", "show")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(len(err.splitlines()), 1, err)

    def test_invalid_config(self) -> None:
        """An invalid configuration is exit 2."""
        self.config.write_text("hostname: rail.test\n")
        code, _, err = self.rail("dkim", "show")
        self.assertEqual(code, 2)
        self.assertNotIn("Traceback", err)

    def test_corrupt_state(self) -> None:
        """A corrupt key store fails with one line naming the file, exit 1."""
        self.assertEqual(self.rail("dkim", "show")[0], 0)
        state = self.data / "dkim" / "example.com" / "state.json"
        state.write_text("[]")
        code, out, err = self.rail("dkim", "show")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn(str(state), err)


def run_issue(case: _DKIMCLITestCase) -> tuple[int, str, str]:
    return case.rail(
        "certs", "issue", "--name", "myapp", "--email", "noreply@ataca.io",
        "--webhook", "https://myapp.example/hook", "--out", str(case.dir),
    )  # fmt: skip


class RotateTests(_DKIMCLITestCase):
    def test_rotate(self) -> None:
        """rotate adds a generation, prints only its records when nothing is queued, and
        tells the operator to send SIGHUP."""
        before = _records(self.rail("dkim", "show")[1])
        code, out, err = self.rail("dkim", "rotate", "example.com")
        self.assertEqual((code, err), (0, ""))
        after = _records(out)
        self.assertEqual(len(after), 2)
        self.assertEqual(set(after) & set(before), set())
        self.assertTrue(all(selector.startswith("r") for selector, _ in after))
        comments = [line for line in out.splitlines() if line.startswith(";")]
        self.assertEqual(len(comments), 1)
        self.assertIn("SIGHUP", comments[0])
        self.assertEqual(_records(self.rail("dkim", "show")[1]), after)

    def test_old_selector_kept_while_queued(self) -> None:
        """A message queued before the rotation keeps the old records published; once
        it is delivered they are no longer printed."""
        before = _records(self.rail("dkim", "show")[1])
        connection = open_writable(self.data / "queue")
        add_message(connection, "01A", 0.0, "deferred")
        connection.close()
        code, out, err = self.rail("dkim", "rotate", "example.com")
        self.assertEqual((code, err), (0, ""))
        after = _records(out)
        self.assertEqual(len(after), 4)
        self.assertLessEqual(set(before), set(after))

        connection = open_writable(self.data / "queue")
        connection.execute("UPDATE recipients SET status = 'sent'")
        connection.close()
        shown = _records(self.rail("dkim", "show")[1])
        self.assertEqual(set(shown), set(after) - set(before))

    def test_not_local(self) -> None:
        """Rotating a domain that is not local fails with one line, exit 1."""
        code, out, err = self.rail("dkim", "rotate", "elsewhere.example")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(len(err.splitlines()), 1, err)

    def test_domain_required(self) -> None:
        """rotate without a domain is a usage error: one line, exit 2."""
        code, _, err = self.rail("dkim", "rotate")
        self.assertEqual(code, 2)
        self.assertEqual(len(err.splitlines()), 1, err)
