"""build_service gives both SMTP listeners one DATA memory budget and the shared refusal
counter, under their own names."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase

from rail.service import build_service
from tests.integration.fixtures import make_config, rail_ca, storage_overrides


class WiringTests(SynchronousTestCase):
    def test_one_budget_for_submission_and_inbound(self) -> None:
        """Submission and inbound protocols share one budget of limits.data_memory and
        count refusals as "submission" and "inbound"."""
        data = Path(self.mktemp()).absolute() / "data"
        config = make_config(
            data,
            **storage_overrides(self),
            listen={
                "https": None,
                "submission": "tcp:0:interface=127.0.0.1",
                "inbound": "tcp:0:interface=127.0.0.1",
                "http": None,
                "dns": None,
            },
            limits={"data_memory": "128MB"},
        )
        rail_ca(data)
        root = build_service(config, reactor)
        protocols = {
            name: root.getServiceNamed(name).factory.wrappedFactory.buildProtocol(None)
            for name in ("submission", "inbound")
        }
        submission, inbound = protocols["submission"], protocols["inbound"]
        self.assertIs(submission._budget, inbound._budget)
        self.assertEqual(submission._budget.capacity, 128 * 1024 * 1024)
        self.assertIs(submission._refusals, inbound._refusals)
        self.assertEqual((submission._listener, inbound._listener), ("submission", "inbound"))
        self.assertEqual(submission._limits.command_timeout, 30.0)
        self.assertEqual(inbound._limits.idle_commands, 100)
