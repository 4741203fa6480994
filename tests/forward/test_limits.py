"""Per-route forwarding rate limits, on a Clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rail.config.schema import InboundRoute
from rail.forward.limits import ForwardLimits


class LimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_790_000_020)  # 40 s into a minute
        self.limits = ForwardLimits()

    def fill(self, route: InboundRoute, count: int) -> None:
        for _ in range(count):
            self.assertTrue(self.limits.allows(0, route, self.clock.seconds()))
            self.limits.count(0, route, self.clock.seconds())

    def test_per_minute(self) -> None:
        """Past the per-minute limit no more is allowed until the next minute."""
        route = InboundRoute(match="*@rail.test", forward=("a@x.example",), forward_per_minute=3)
        self.fill(route, 3)
        self.assertFalse(self.limits.allows(0, route, self.clock.seconds()))
        self.clock.advance(19)
        self.assertFalse(self.limits.allows(0, route, self.clock.seconds()))
        self.clock.advance(1)
        self.assertTrue(self.limits.allows(0, route, self.clock.seconds()))

    def test_per_hour(self) -> None:
        """The hourly limit holds across minutes."""
        route = InboundRoute(
            match="*@rail.test", forward=("a@x.example",), forward_per_minute=2, forward_per_hour=3
        )
        self.fill(route, 2)
        self.clock.advance(60)
        self.fill(route, 1)
        self.assertFalse(self.limits.allows(0, route, self.clock.seconds()))
        self.clock.advance(3600)
        self.assertTrue(self.limits.allows(0, route, self.clock.seconds()))

    def test_unlimited_and_separate(self) -> None:
        """A route without limits is never limited, and routes count apart."""
        free = InboundRoute(match="*@rail.test", forward=("a@x.example",))
        limited = InboundRoute(match="*@other.test", forward=("a@x.example",), forward_per_minute=1)
        for _ in range(100):
            self.limits.count(0, free, self.clock.seconds())
        self.assertTrue(self.limits.allows(0, free, self.clock.seconds()))
        self.assertTrue(self.limits.allows(1, limited, self.clock.seconds()))
        self.limits.count(1, limited, self.clock.seconds())
        self.assertFalse(self.limits.allows(1, limited, self.clock.seconds()))
