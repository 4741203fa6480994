"""The retry schedule and expiry, pinned with exact values (STYLE.md rule 6)."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.outcome import Reply, disposition
from rail.delivery.schedule import (
    DEFAULT_MAX_AGE,
    DEFAULT_RETRY,
    expiry_reply,
    next_attempt,
    retry_delay,
)


class FixedRandom(random.Random):
    """A random source whose ``uniform`` returns a chosen point of the range it is
    asked for (0 = low end, 0.5 = middle, 1 = high end) and records each range."""

    def __init__(self, point: float = 0.5) -> None:
        super().__init__(0)
        self.point = point
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.ranges.append((a, b))
        return a + (b - a) * self.point


RECEIVED = 1_000_000.0
DEADLINE = RECEIVED + DEFAULT_MAX_AGE


class RetryDelayTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """The default schedule is 1m, 5m, 15m, 30m, 1h, 2h, 4h and max age 5 days."""
        self.assertEqual(DEFAULT_RETRY, (60, 300, 900, 1800, 3600, 7200, 14400))
        self.assertEqual(DEFAULT_MAX_AGE, 432_000)

    def test_table_without_jitter_offset(self) -> None:
        """At the middle of the jitter range each failure count gets its scheduled
        delay, and past the end of the schedule the last step repeats."""
        table = [
            (1, 60.0),
            (2, 300.0),
            (3, 900.0),
            (4, 1800.0),
            (5, 3600.0),
            (6, 7200.0),
            (7, 14400.0),
            (8, 14400.0),
            (9, 14400.0),
            (1000, 14400.0),
        ]
        for failures, expected in table:
            delay = retry_delay(failures, DEFAULT_RETRY, FixedRandom(0.5))
            self.assertEqual(delay, expected, f"failures={failures}")

    def test_jitter_bounds(self) -> None:
        """The delay is scaled by a factor drawn from [0.9, 1.1] by default, so the
        extremes of the range give exactly -10% and +10%."""
        low, high = FixedRandom(0.0), FixedRandom(1.0)
        self.assertEqual(retry_delay(1, DEFAULT_RETRY, low), 54.0)
        self.assertEqual(retry_delay(1, DEFAULT_RETRY, high), 66.0)
        self.assertEqual(retry_delay(7, DEFAULT_RETRY, low), 12960.0)
        self.assertEqual(low.ranges, [(0.9, 1.1), (0.9, 1.1)])

    def test_custom_jitter_and_schedule(self) -> None:
        """A configured schedule and jitter are used as given; zero jitter is exact."""
        rng = FixedRandom(1.0)
        self.assertEqual(retry_delay(2, (10.0, 20.0), rng, jitter=0.5), 30.0)
        self.assertEqual(retry_delay(5, (10.0, 20.0), FixedRandom(0.0), jitter=0.0), 20.0)
        self.assertEqual(rng.ranges, [(0.5, 1.5)])

    def test_seeded_random(self) -> None:
        """With a seeded ``random.Random`` the delay is reproducible to the last bit."""
        self.assertEqual(retry_delay(1, DEFAULT_RETRY, random.Random(42)), 61.67312158149461)

    def test_invalid_arguments(self) -> None:
        """Zero failures, an empty schedule or a jitter of 100% or more are refused."""
        rng = FixedRandom()
        self.assertRaises(ValueError, retry_delay, 0, DEFAULT_RETRY, rng)
        self.assertRaises(ValueError, retry_delay, 1, (), rng)
        self.assertRaises(ValueError, retry_delay, 1, DEFAULT_RETRY, rng, 1.0)
        self.assertRaises(ValueError, retry_delay, 1, DEFAULT_RETRY, rng, -0.1)


class NextAttemptTests(SynchronousTestCase):
    def attempt(self, now: float, failures: int, rng: random.Random | None = None) -> float | None:
        return next_attempt(
            now, RECEIVED, failures, DEFAULT_RETRY, DEFAULT_MAX_AGE, rng or FixedRandom()
        )

    def test_first_retry(self) -> None:
        """After the first failure, the next attempt is one (jittered) minute later."""
        self.assertEqual(self.attempt(RECEIVED + 5, 1), RECEIVED + 65)
        self.assertEqual(self.attempt(RECEIVED + 5, 1, FixedRandom(1.0)), RECEIVED + 71)

    def test_later_retry(self) -> None:
        """The delay counts from now, by failure count, not from the arrival."""
        self.assertEqual(self.attempt(RECEIVED + 86_400, 9), RECEIVED + 86_400 + 14_400)

    def test_clamped_to_deadline(self) -> None:
        """A retry that would fall after the expiry happens at the expiry instead: one
        last attempt at the deadline rather than a bounce a whole step early."""
        self.assertEqual(self.attempt(DEADLINE - 100, 9), DEADLINE)
        self.assertEqual(self.attempt(DEADLINE - 0.001, 9), DEADLINE)

    def test_just_fits(self) -> None:
        """A retry that lands exactly on the deadline is kept as computed."""
        self.assertEqual(self.attempt(DEADLINE - 14_400, 9), DEADLINE)
        self.assertEqual(self.attempt(DEADLINE - 14_401, 9), DEADLINE - 1)

    def test_expired_at_deadline(self) -> None:
        """At or after ``received_at + max_age`` there is no next attempt, and no
        randomness is consumed."""
        rng = FixedRandom()
        self.assertIsNone(self.attempt(DEADLINE, 1, rng))
        self.assertIsNone(self.attempt(DEADLINE + 1, 30, rng))
        self.assertEqual(rng.ranges, [])

    def test_custom_max_age(self) -> None:
        """A configured max age moves the deadline."""
        rng = FixedRandom()
        self.assertEqual(next_attempt(100.0, 0.0, 1, (60.0,), 130.0, rng), 130.0)
        self.assertIsNone(next_attempt(130.0, 0.0, 1, (60.0,), 130.0, rng))


class ExpiryReplyTests(SynchronousTestCase):
    def test_with_last_reply(self) -> None:
        """Expiry is a local 554 5.4.7 that keeps the last reply in its text."""
        last = Reply(451, "4.7.1", "greylisted, try later")
        reply = expiry_reply(last)
        self.assertEqual(
            reply,
            Reply(
                554,
                "5.4.7",
                "delivery time expired; last attempt: 451 4.7.1 greylisted, try later",
                remote=False,
            ),
        )
        self.assertEqual(disposition(reply), "bounced")

    def test_without_attempt(self) -> None:
        """A recipient never attempted (a long outage of Rail) still gets a reason."""
        reply = expiry_reply(None)
        self.assertEqual((reply.code, reply.enhanced, reply.remote), (554, "5.4.7", False))
        self.assertIn("before any attempt", reply.text)
