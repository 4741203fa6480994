"""Refusals are all counted but logged at most once per listener and reason per interval."""

from __future__ import annotations

from prometheus_client import generate_latest
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rail.refusals import Refusals


class RefusalsTests(SynchronousTestCase):
    def test_counts_every_refusal_logs_one_line_per_interval(self) -> None:
        """A burst is counted in full but logged once; the next line says how many were folded."""
        clock = Clock()
        refusals = Refusals(clock, interval=10.0)
        with capturedLogs() as events:
            for _ in range(5):
                refusals.refuse("inbound", "per_ip", "192.0.2.1")
            clock.advance(10)
            refusals.refuse("inbound", "per_ip", "192.0.2.1")
        lines = [e for e in events if "refused" in e.get("log_format", "")]
        self.assertEqual([e["folded"] for e in lines], [0, 4])
        self.assertEqual(refusals.counts[("inbound", "per_ip")], 6)
        text = generate_latest(refusals.registry).decode()
        self.assertIn('rail_refusals_total{listener="inbound",reason="per_ip"} 6.0', text)

    def test_pairs_are_logged_independently(self) -> None:
        """A flood of one reason does not hide the first refusal of another."""
        clock = Clock()
        refusals = Refusals(clock)
        with capturedLogs() as events:
            refusals.refuse("inbound", "per_ip")
            refusals.refuse("inbound", "per_ip")
            refusals.refuse("https", "handshake_timeout")
        reasons = [e["reason"] for e in events if "refused" in e.get("log_format", "")]
        self.assertEqual(reasons, ["per_ip", "handshake_timeout"])
