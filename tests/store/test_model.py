"""The overall message status rule shared by every store and the API."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.store.model import overall_status


class OverallStatusTests(SynchronousTestCase):
    def test_table(self) -> None:
        """Deferred wins while anything is pending after a try; queued while the rest is
        untried or done; failed once nothing is pending and one was quarantined; bounced
        once nothing is pending, none failed and one bounced; else sent."""
        table = [
            (("queued",), "queued"),
            (("queued", "queued"), "queued"),
            (("sent", "queued"), "queued"),
            (("deferred", "queued"), "deferred"),
            (("sent", "deferred"), "deferred"),
            (("bounced", "deferred"), "deferred"),
            (("sent", "sent"), "sent"),
            (("sent", "bounced"), "bounced"),
            (("bounced",), "bounced"),
            (("failed",), "failed"),
            (("sent", "bounced", "failed"), "failed"),
            (("failed", "deferred"), "deferred"),
        ]
        for states, expected in table:
            self.assertEqual(overall_status(states), expected, states)
