"""The rings of per-second and per-minute counts behind the rates and charts."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.tally import DAY_MINUTES, WINDOW, Tally

_T0 = 1_800_000_000.0  # a minute boundary


class TallyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(_T0)
        self.tally = Tally()

    def add(self, count: int = 1) -> None:
        self.tally.add(self.clock.seconds(), count)

    def test_rates_and_series(self) -> None:
        """Counts land in their second and minute; the rate is per minute over the last
        N seconds; the series are oldest first."""
        self.add(2)
        self.clock.advance(30)
        self.add()
        self.clock.advance(40)
        self.add(3)
        now = self.clock.seconds()
        self.assertEqual(self.tally.total, 6)
        self.assertEqual(self.tally.rate(now, 60), 4.0)
        self.assertEqual(self.tally.rate(now, WINDOW), 6 * 60 / WINDOW)
        self.assertEqual(
            self.tally.per_second(now),
            [(int(_T0), 2), (int(_T0) + 30, 1), (int(_T0) + 70, 3)],
        )
        self.assertEqual(self.tally.per_minute(now), [(int(_T0), 3), (int(_T0) + 60, 3)])

    def test_bounded(self) -> None:
        """A day of one count a second keeps at most 300 seconds and 1,440 minutes;
        what is older ages out of each ring."""
        for _ in range(86_400 + 600):
            self.add()
            self.clock.advance(1)
        now = self.clock.seconds()
        seconds = self.tally.per_second(now)
        self.assertLessEqual(len(seconds), WINDOW)
        self.assertEqual(seconds[0][0], now - WINDOW + 1)
        minutes = self.tally.per_minute(now)
        self.assertLessEqual(len(minutes), DAY_MINUTES)
        self.assertGreater(minutes[0][0], now - 86_400 - 60)
        self.assertEqual(self.tally.total, 87_000)
        self.clock.advance(86_400)
        later = self.clock.seconds()
        self.assertEqual((self.tally.per_second(later), self.tally.per_minute(later)), ([], []))
        self.assertEqual(self.tally.rate(later, 60), 0.0)

    def test_clock_stepping_back(self) -> None:
        """A time before the newest bucket counts in the newest bucket: the rings stay
        in order and nothing is lost; zero is not counted."""
        self.clock.advance(120)
        self.add()
        self.tally.add(_T0, 2)
        self.tally.add(_T0 + 130, 0)
        self.assertEqual(self.tally.per_minute(_T0 + 130), [(int(_T0) + 120, 3)])
        self.assertEqual(self.tally.per_second(_T0 + 130), [(int(_T0) + 120, 3)])
        self.assertEqual(self.tally.total, 3)
