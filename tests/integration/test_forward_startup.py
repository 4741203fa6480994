"""``twistd rail`` refuses to start with a forwarding loop, as ``rail config-check`` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.integration.processes import free_port, other_listeners, rail, start_twistd


class ForwardLoopStartTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_loop_fails_start(self) -> Any:
        """A forward target that routes back to Rail stops start-up with exit 2 and one
        line naming the setting, before any port is bound."""
        directory = Path(self.mktemp()).absolute()
        out, err, code = yield rail(
            "init", "--dev", str(directory), "--https-port", str(free_port()),
            "--submission-port", str(free_port()), *other_listeners(),
        )  # fmt: skip
        self.assertEqual(code, 0, err)
        config = directory / "rail.yaml"
        document = yaml.safe_load(config.read_text())
        document["inbound"]["routes"] = [
            {"match": "*@rail.test", "forward": ["a@mailbox.example", "b@rail.test"]}
        ]
        config.write_text(yaml.safe_dump(document))
        server = start_twistd(["rail", "--config", str(config)])
        code = yield server.ended
        self.assertEqual(code, 2, bytes(server.output).decode()[-2000:])
        self.assertIn(
            b"rail: inbound.routes[0].forward[1]: b@rail.test routes back to Rail"
            b" (a forwarding loop)",
            bytes(server.output),
        )
        self.assertNotIn(b"Traceback", bytes(server.output))
        self.assertNotIn(b"listening on", bytes(server.output))
