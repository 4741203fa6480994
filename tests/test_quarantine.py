"""The quarantine observer: one log line and one count per quarantined message."""

from __future__ import annotations

from prometheus_client import generate_latest
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rail.quarantine import Quarantines
from rail.store.model import Quarantined


class QuarantinesTests(SynchronousTestCase):
    def test_counts_and_logs_once(self) -> None:
        """Each report is one error line naming the message, its queue, kind and reason,
        and one increment of rail_quarantined_total{queue,kind}; every series exists
        from the start at 0."""
        quarantines = Quarantines()
        text = generate_latest(quarantines.registry).decode()
        self.assertIn('rail_quarantined_total{kind="timeout",queue="inbound"} 0.0', text)
        with capturedLogs() as events:
            quarantines(Quarantined("outbound", "01ABC", "corrupt", "stored data is truncated"))
        (event,) = events
        self.assertEqual(event["log_level"], LogLevel.error)
        self.assertEqual(
            (event["queue"], event["msg_id"], event["kind"], event["reason"]),
            ("outbound", "01ABC", "corrupt", "stored data is truncated"),
        )
        text = generate_latest(quarantines.registry).decode()
        self.assertIn('rail_quarantined_total{kind="corrupt",queue="outbound"} 1.0', text)
        self.assertEqual(quarantines.counts, {("outbound", "corrupt"): 1})
