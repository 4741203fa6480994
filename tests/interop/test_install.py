"""A non-editable ``pip install .`` works: the ``rail`` command, the twistd plugin and the
.tac file all come from the installed package, not from a checkout.

The source is copied to a temporary directory and installed with ``pip install --no-deps``
into a fresh virtualenv (pip builds it in isolation, fetching the build backend as any
install does); the dependencies come from this environment through a ``.pth`` line, so
only Rail itself is installed. Nothing of the checkout is on the installed Rail's path:
no ``PYTHONPATH``, a working directory outside it. Bounded: pip gets four minutes, each
server twenty seconds to listen.
"""

from __future__ import annotations

import configparser
import os
import shutil
import site
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.integration.processes import REPO, Server, free_port, wait_for_port

_SOURCE = ("rail", "twisted", "setup.cfg", "pyproject.toml", "README.md")
_TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache")


def _version() -> str:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    return parser["metadata"]["version"]


class InstalledTests(TestCase):
    timeout = 420

    def setUp(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="rail-install-"))
        self.addCleanup(shutil.rmtree, self.base, True)
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAIL_CONFIG")}

    def run_checked(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.base,
            env=self.env,
            timeout=timeout,
        )
        self.assertEqual(done.returncode, 0, f"{args}:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def install(self) -> Path:
        """The copied source installed into a fresh virtualenv; its bin directory."""
        source = self.base / "source"
        source.mkdir()
        for name in _SOURCE:
            origin = REPO / name
            if origin.is_dir():
                shutil.copytree(origin, source / name, ignore=_IGNORE)
            else:
                shutil.copy(origin, source / name)
        venv = self.base / "venv"
        self.run_checked(sys.executable, "-m", "venv", str(venv))
        python = str(venv / "bin" / "python")
        code = "import sysconfig; print(sysconfig.get_path('purelib'))"
        purelib = Path(self.run_checked(python, "-c", code).strip())
        # The dependencies from here; appended after the venv's own site-packages.
        dependencies = "\n".join(site.getsitepackages()) + "\n"
        (purelib / "rail-test-dependencies.pth").write_text(dependencies)
        self.run_checked(
            python, "-m", "pip", "install", "-q", "--no-deps", str(source),
            timeout=240,
        )  # fmt: skip
        self.purelib = purelib
        return venv / "bin"

    def serve(self, bin_dir: Path, args: list[str], env: dict[str, str]) -> Server:
        """twistd run by the virtualenv's Python (Twisted, and so its ``twistd`` script,
        comes from this environment)."""
        server = Server()
        python = str(bin_dir / "python")
        reactor.spawnProcess(
            server, python, [python, "-c", _TWISTD, "-n", "--pidfile=", *args],
            env={**self.env, **env}, path=str(self.base),
        )  # fmt: skip
        return server

    async def stop(self, server: Server) -> Any:
        if not server.ended.called:
            server.signal("TERM")
        return await server.ended

    def healthz(self, port: int, ca: Path) -> bytes:
        context = ssl.create_default_context(cafile=str(ca))
        url = f"https://127.0.0.1:{port}/healthz"
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            body: bytes = response.read()
        return body

    async def test_plugin_and_tac_from_the_installed_package(self) -> None:
        """After ``pip install .`` (not editable): ``rail --version`` says setup.cfg's
        version; ``rail``, the twistd plugin and ``rail tac-path``'s file all live in the
        virtualenv; ``twistd rail`` and ``twistd -ny "$(rail tac-path)"`` each serve
        ``/healthz`` on a ``rail init --dev`` set-up made by the installed command."""
        bin_dir = await deferToThread(self.install)
        out = self.run_checked(str(bin_dir / "rail"), "--version")
        self.assertEqual(out, f"rail {_version()}\n")
        code = "import rail, twisted.plugins.rail_plugin as p; print(rail.__file__, p.__file__)"
        where = self.run_checked(str(bin_dir / "python"), "-c", code).split()
        for path in where:
            self.assertTrue(Path(path).is_relative_to(self.purelib), path)
        tac = Path(self.run_checked(str(bin_dir / "rail"), "tac-path").strip())
        self.assertEqual(tac, self.purelib / "rail" / "rail.tac")
        self.assertTrue(tac.is_file())

        dev = self.base / "dev"
        port = free_port()
        ports = [str(free_port()) for _ in range(4)]
        self.run_checked(
            str(bin_dir / "rail"), "init", "--dev", str(dev), "--https-port", str(port),
            "--submission-port", ports[0], "--inbound-port", ports[1], "--http-port", ports[2],
            "--dns-port", ports[3],
        )  # fmt: skip
        config = str(dev / "rail.yaml")
        for args, env in (
            (["rail", "--config", config], {}),
            (["-y", str(tac)], {"RAIL_CONFIG": config}),
        ):
            server = self.serve(bin_dir, args, env)
            await wait_for_port(port, server)
            body = await deferToThread(self.healthz, port, dev / "ca.crt")
            self.assertEqual(body, b"ok\n")
            self.assertEqual(await self.stop(server), -15, server.output.decode()[-2000:])
