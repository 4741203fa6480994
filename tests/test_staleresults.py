"""The stale-result observer: one log line and one count per result another node's
takeover kept from being written."""

from __future__ import annotations

from prometheus_client import generate_latest
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from rail.staleresults import StaleResults
from rail.store.model import Stale


class StaleResultsTests(SynchronousTestCase):
    def test_counts_and_logs_once(self) -> None:
        """Each report is one warning naming the queue, the job and why, and one increment
        of rail_stale_results_total{queue}; every queue's series exists from the start."""
        stale = StaleResults()
        text = generate_latest(stale.registry).decode()
        for queue in ("outbound", "inbound", "events"):
            self.assertIn(f'rail_stale_results_total{{queue="{queue}"}} 0.0', text)
        with capturedLogs() as events:
            stale(Stale("outbound", "01ABC", "recipients 01ABC/0 is held by B"))
        (event,) = events
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertEqual(event["log_namespace"], "rail.staleresults")
        self.assertEqual(
            formatEvent(event),
            "result for outbound job 01ABC not recorded: another node took the job after"
            " this node's lease ended (recipients 01ABC/0 is held by B)",
        )
        text = generate_latest(stale.registry).decode()
        self.assertIn('rail_stale_results_total{queue="outbound"} 1.0', text)
        self.assertEqual(stale.counts, {"outbound": 1})
