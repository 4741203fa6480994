"""contrib/rail.service: valid for systemd, and in step with what Rail writes and does."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.cli import DEFAULT_CONFIG
from rail.config.production import PRODUCTION_DATA_DIR
from tests.support.tools import need_tool

UNIT = Path(__file__).resolve().parents[1] / "contrib" / "rail.service"
_INSTALLED_BIN = "/opt/rail/bin/"


def _service_section() -> dict[str, list[str]]:
    """The ``[Service]`` directives, each with every value it is given."""
    directives: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            key, _, value = line.partition("=")
            directives.setdefault(key, []).append(value)
    return directives


class UnitTests(SynchronousTestCase):
    def test_systemd_analyze_verify(self) -> None:
        """``systemd-analyze verify`` accepts the unit without a warning (an unknown or
        misspelt directive is only a warning to systemd), with its commands pointed at this
        environment's ``rail`` and ``twistd``."""
        analyze = need_tool("systemd-analyze", "systemd")
        directory = Path(self.mktemp())
        directory.mkdir()
        here = f"{Path(sys.executable).parent}/"
        for name in ("rail", "twistd"):
            self.assertTrue(Path(here, name).exists(), f"{here}{name}")
        text = UNIT.read_text()
        self.assertIn(_INSTALLED_BIN + "twistd", text)
        (directory / "rail.service").write_text(text.replace(_INSTALLED_BIN, here))
        done = subprocess.run(
            [analyze, "verify", str(directory / "rail.service")],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        self.assertEqual((done.returncode, done.stderr, done.stdout), (0, "", ""))

    def test_hardening_and_paths(self) -> None:
        """The unit runs twistd in the foreground as ``rail`` with only
        CAP_NET_BIND_SERVICE, read-only but for the data directory ``rail init
        --production`` writes, the config where ``rail`` looks for it, restarts on
        failure, reloads with SIGHUP and waits for Rail's READY=1."""
        service = _service_section()

        def one(key: str) -> str:
            [value] = service[key]
            return value

        self.assertEqual(one("Type"), "notify")
        self.assertEqual((one("User"), one("Group")), ("rail", "rail"))
        self.assertEqual(one("AmbientCapabilities"), "CAP_NET_BIND_SERVICE")
        self.assertEqual(one("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE")
        self.assertEqual(one("NoNewPrivileges"), "yes")
        self.assertEqual(one("ProtectSystem"), "strict")
        self.assertEqual(one("ReadWritePaths"), PRODUCTION_DATA_DIR)
        self.assertEqual(f"/var/lib/{one('StateDirectory')}", PRODUCTION_DATA_DIR)
        self.assertEqual(one("PrivateTmp"), "yes")
        self.assertEqual(one("Restart"), "on-failure")
        self.assertEqual(one("ExecReload"), "/bin/kill -HUP $MAINPID")
        self.assertEqual(
            one("ExecStart"),
            f"{_INSTALLED_BIN}twistd --nodaemon --pidfile= rail --config {DEFAULT_CONFIG}",
        )
        self.assertEqual(
            one("ExecStartPre"), f"{_INSTALLED_BIN}rail config-check --config {DEFAULT_CONFIG}"
        )

    def test_parses_as_ini(self) -> None:
        """Every line is in a section and no directive repeats where systemd would take
        only the last (a second ``User=`` would silently win)."""
        parser = configparser.ConfigParser(strict=True, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(UNIT.read_text())
        self.assertEqual(parser.sections(), ["Unit", "Service", "Install"])
