"""``rail queue`` without a server: its own admin certificate, usage errors, an
unreachable server. (Every subcommand against a running server over real TLS is in
tests/integration/test_queue_cli.py.)"""

from __future__ import annotations

import socket
import stat
from datetime import UTC, datetime, timedelta

from rail.config import load_config
from rail.pki.registry import Registry, registry_path
from rail.queuecli import LOCAL_ADMIN, local_admin_certificate
from tests.test_cli import _CLITestCase


class LocalAdminTests(_CLITestCase):
    def test_issued_once_private_and_recorded(self) -> None:
        """The CLI's certificate is issued into data_dir/cli with a 0600 key, recorded
        as an admin certificate, and reused while valid."""
        config = load_config(self.config)
        now = datetime.now(UTC)
        cert, key = local_admin_certificate(config, now)
        self.assertEqual(cert.parent, config.data_dir / "cli")
        self.assertEqual(stat.S_IMODE(key.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(cert.parent.stat().st_mode), 0o700)
        first = cert.read_bytes()
        self.assertEqual(local_admin_certificate(config, now)[0].read_bytes(), first)
        with Registry.open(registry_path(config.data_dir)) as registry:
            [record] = registry.find(LOCAL_ADMIN)
        self.assertEqual(record.role, "admin")

    def test_reissued_after_expiry(self) -> None:
        """Once the certificate has expired, the next command issues a new one."""
        config = load_config(self.config)
        now = datetime.now(UTC)
        cert, _ = local_admin_certificate(config, now)
        first = cert.read_bytes()
        later = now + timedelta(seconds=config.pki.client_validity + 86400)
        self.assertNotEqual(local_admin_certificate(config, later)[0].read_bytes(), first)


class UsageTests(_CLITestCase):
    def test_usage_errors_exit_2(self) -> None:
        """A missing ID, a missing --reason for delete, retry without a target and a
        bad --url are usage errors: exit 2, one line on stderr."""
        config = str(self.config)
        for args in (
            ("queue", "show", "--config", config),
            ("queue", "delete", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--config", config),
            ("queue", "retry", "--config", config, "--url", "https://127.0.0.1:1"),
            ("queue", "list", "--config", config, "--url", "http://127.0.0.1:1"),
        ):
            code, _, err = self.rail(*args)
            self.assertEqual(code, 2, args)
            self.assertEqual(len(err.splitlines()), 1, err)

    def test_unreachable_server_exit_1(self) -> None:
        """No server listening: exit 1 with one line naming the URL."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"https://127.0.0.1:{port}"
        code, _, err = self.rail("queue", "list", "--config", str(self.config), "--url", url)
        self.assertEqual(code, 1)
        [line] = err.splitlines()
        self.assertIn(url, line)
