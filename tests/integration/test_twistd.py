"""Rail as an operator runs it: ``rail init --dev``, ``twistd rail``, curl, revoke, SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.integration.processes import (
    REPO,
    free_port,
    other_listeners,
    rail,
    run,
    start_twistd,
    wait_for_output,
    wait_for_port,
)
from tests.support.tools import need_tool

_CURL = shutil.which("curl")


class TwistdTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def setUp(self) -> Any:
        need_tool("curl", "curl")
        self.dir = Path(self.mktemp()).absolute()
        self.port = free_port()
        self.smtps_port = free_port()
        out, err, code = yield rail(
            "init",
            "--dev",
            str(self.dir),
            "--https-port",
            str(self.port),
            "--submission-port",
            str(self.smtps_port),
            *other_listeners(),
        )
        self.assertEqual(code, 0, err)
        self.config = str(self.dir / "rail.yaml")

    def curl(self, *args: str) -> Any:
        base = ["-sS", "--max-time", "10", "--cacert", str(self.dir / "ca.crt")]
        return run(_CURL, *base, *args)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    @inlineCallbacks
    def stop(self, server: Any) -> Any:
        if not server.ended.called:
            server.signal("TERM")
        code = yield server.ended
        return code

    @inlineCallbacks
    def test_plugin_serves_who_and_revocation(self) -> Any:
        """twistd rail serves /api/who to curl; a revoke is picked up by the running
        server on its own and refuses the next connection."""
        server = start_twistd(["rail", "--config", self.config])
        self.addCleanup(self.stop, server)
        yield wait_for_port(self.port, server)
        cert = ["--cert", str(self.dir / "app.crt"), "--key", str(self.dir / "app.key")]

        out, err, code = yield self.curl(*cert, self.url("/api/who"))
        self.assertEqual(code, 0, err)
        info = json.loads(out)
        self.assertEqual(info["client_id"], "app")
        self.assertEqual(info["senders"], ["app@rail.test"])
        self.assertEqual((info["valid"], info["key_type"]), (True, "ed25519"))

        out, err, code = yield self.curl(
            "-w", "%{http_code}", "-o", os.devnull, self.url("/api/who")
        )
        self.assertEqual(out, b"401")

        out, err, code = yield self.curl(
            "-X", "POST", "--data-binary", f"@{self.dir / 'app.crt'}", self.url("/api/who")
        )
        self.assertEqual(json.loads(out)["client_id"], "app")

        out, err, code = yield rail("certs", "revoke", "--config", self.config, "app")
        self.assertEqual(code, 0, err)
        # The server looks at the CRL file every second, by itself.
        yield wait_for_output(b"revocations reloaded: 1 revoked", server)
        out, err, code = yield self.curl(*cert, self.url("/api/who"))
        self.assertNotEqual(code, 0)
        self.assertIn(b"refused client certificate 'app'", bytes(server.output))

    @inlineCallbacks
    def test_sigterm_drains_then_exits(self) -> Any:
        """On SIGTERM /readyz answers 503 during the drain delay, then Rail shuts down."""
        server = start_twistd(["rail", "--config", self.config])
        self.addCleanup(self.stop, server)
        yield wait_for_port(self.port, server)
        out, err, code = yield self.curl(
            "-w", "%{http_code}", "-o", os.devnull, self.url("/readyz")
        )
        self.assertEqual(out, b"200")
        server.signal("TERM")
        out, err, code = yield self.curl(
            "-w", "%{http_code}", "-o", os.devnull, self.url("/readyz")
        )
        self.assertEqual(out, b"503")
        code = yield server.ended
        self.assertEqual(code, -signal.SIGTERM)
        output = bytes(server.output)
        self.assertIn(b"rail stopped", output)
        self.assertIn(b"Main loop terminated.", output)
        self.assertNotIn(b"Traceback", output)

    @inlineCallbacks
    def test_tac_file(self) -> Any:
        """``rail tac-path`` names the package's rail.tac (in a checkout, its own file);
        twistd -ny with it starts the same tree, config from RAIL_CONFIG."""
        out, err, code = yield rail("tac-path")
        self.assertEqual(code, 0, err)
        tac = Path(out.decode().strip())
        self.assertEqual(tac, REPO / "rail" / "rail.tac")
        server = start_twistd(
            ["-y", str(tac)], env={"RAIL_CONFIG": self.config}, path=str(self.dir)
        )
        self.addCleanup(self.stop, server)
        yield wait_for_port(self.port, server)
        out, err, code = yield self.curl(self.url("/healthz"))
        self.assertEqual(out, b"ok\n")

    @inlineCallbacks
    def test_corrupt_ca_key_fails_start(self) -> Any:
        """A corrupt CA key stops start-up with exit 1 and one line naming the file."""
        key = self.dir / "data" / "ca" / "ca.key"
        key.write_bytes(b"not a key\n")
        server = start_twistd(["rail", "--config", self.config])
        code = yield server.ended
        self.assertEqual(code, 1)
        self.assertIn(f"rail: {key}: ".encode(), bytes(server.output))
        self.assertNotIn(b"Traceback", bytes(server.output))

    @inlineCallbacks
    def test_invalid_config_fails_start(self) -> Any:
        """An invalid config stops start-up with exit 2 and path-qualified lines."""
        bad = self.dir / "bad.yaml"
        bad.write_text("hostname: rail.test\nbogus: 1\nshutdown:\n  drain_delay: 5x\n")
        server = start_twistd(["rail", "--config", str(bad)])
        code = yield server.ended
        self.assertEqual(code, 2)
        self.assertIn(b"rail: bogus: unknown key", bytes(server.output))
        self.assertIn(b"rail: shutdown.drain_delay: ", bytes(server.output))
        self.assertNotIn(b"Traceback", bytes(server.output))

    @inlineCallbacks
    def test_port_in_use_fails_start(self) -> Any:
        """A port already in use stops start-up with exit 1 and one line naming the key."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", self.port))
            taken.listen(1)
            server = start_twistd(["rail", "--config", self.config])
            code = yield server.ended
        self.assertEqual(code, 1)
        expected = f"rail: listen.https: cannot listen on 127.0.0.1:{self.port}: "
        self.assertIn(f"{expected}Address already in use".encode(), bytes(server.output))
        self.assertNotIn(b"Traceback", bytes(server.output))
