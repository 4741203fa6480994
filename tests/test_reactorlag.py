"""The reactor lag probe: how late its timer fires, as a histogram and in /stats."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rail.reactorlag import BUCKETS, ReactorLag


def _bucket(registry: CollectorRegistry, bound: str) -> float | None:
    return registry.get_sample_value("rail_reactor_lag_seconds_bucket", {"le": bound})


class ReactorLagTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.registry = CollectorRegistry()
        self.probe = ReactorLag(self.clock, self.registry, interval=0.1, window=4)
        self.probe.startService()

    def test_lag_is_how_late_the_timer_fires(self) -> None:
        """A timer run on time observes no lag; one run 0.3 s after its due time (the
        reactor was held) observes 0.3 s, in the histogram's 0.5 s bucket, not below."""
        self.clock.advance(0.1)
        self.clock.advance(0.4)  # due at 0.2, run at 0.5
        self.assertEqual(self.registry.get_sample_value("rail_reactor_lag_seconds_count"), 2)
        self.assertAlmostEqual(
            self.registry.get_sample_value("rail_reactor_lag_seconds_sum") or 0.0, 0.3
        )
        self.assertEqual(_bucket(self.registry, "0.001"), 1)
        self.assertEqual(_bucket(self.registry, "0.25"), 1)
        self.assertEqual(_bucket(self.registry, "0.5"), 2)

    def test_next_probe_counts_from_when_the_last_ran(self) -> None:
        """After a late probe the next is due an interval later than it ran, so one long
        hold is one late probe, not a burst of them."""
        self.clock.advance(2.0)
        self.assertEqual(self.registry.get_sample_value("rail_reactor_lag_seconds_count"), 1)
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), 2.1)

    def test_buckets_from_1ms_to_1s(self) -> None:
        """Buckets start at 1 ms and the last finite one is 1 s (then +Inf)."""
        self.assertEqual((BUCKETS[0], BUCKETS[-1]), (0.001, 1.0))
        self.assertEqual(_bucket(self.registry, "+Inf"), 0)

    def test_summary_over_the_window(self) -> None:
        """/stats' figures cover the last ``window`` probes: their p99 and maximum."""
        self.assertEqual(self.probe.summary(), {"samples": 0, "p99": None, "max": None})
        self.clock.advance(0.35)  # 0.25 late
        for _ in range(4):
            self.clock.advance(0.1)
        self.assertEqual(self.probe.summary(), {"samples": 4, "p99": 0.0, "max": 0.0})
        self.clock.advance(0.15)
        summary = self.probe.summary()
        self.assertEqual(summary["samples"], 4)
        self.assertAlmostEqual(summary["max"], 0.05)  # type: ignore[arg-type]

    def test_stop_leaves_nothing_scheduled(self) -> None:
        """Stopping the service cancels its timer."""
        self.probe.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(self.probe.running)
