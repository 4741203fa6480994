"""rail.workers.restart: what the parent does when a worker ends."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.workers.restart import Backoff, GiveUp, Restart, exit_decision

BACKOFF = Backoff(first=1.0, cap=60.0, stable=60.0)


def _decide(**overrides: object) -> Restart | GiveUp | None:
    values: dict[str, object] = {
        "stopping": False,
        "started": True,
        "deaths": 0,
        "ran_for": 5.0,
        "exit_code": 1,
        "backoff": BACKOFF,
    }
    values.update(overrides)
    return exit_decision(**values)  # type: ignore[arg-type]


class BackoffTests(SynchronousTestCase):
    def test_doubling_to_the_cap(self) -> None:
        """1 s after the first death in a row, doubling with each, never above the cap."""
        delays = [BACKOFF.delay(n) for n in range(1, 10)]
        self.assertEqual(delays, [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0])


class ExitDecisionTests(SynchronousTestCase):
    def test_asked_to_stop(self) -> None:
        """A worker that ends while the parent stops is not restarted."""
        self.assertIsNone(_decide(stopping=True))
        self.assertIsNone(_decide(stopping=True, started=False))

    def test_failed_at_start(self) -> None:
        """A worker that ends before every worker was ever ready ends the parent with its
        exit status (1 when a signal ended it or it exited 0)."""
        self.assertEqual(_decide(started=False, exit_code=2), GiveUp(code=2))
        self.assertEqual(_decide(started=False, exit_code=None), GiveUp(code=1))
        self.assertEqual(_decide(started=False, exit_code=0), GiveUp(code=1))

    def test_crash_loop_backs_off(self) -> None:
        """Deaths in a row, each soon after its start, wait longer and longer."""
        self.assertEqual(_decide(deaths=0), Restart(delay=1.0, deaths=1))
        self.assertEqual(_decide(deaths=1), Restart(delay=2.0, deaths=2))
        self.assertEqual(_decide(deaths=6), Restart(delay=60.0, deaths=7))

    def test_long_run_starts_a_new_count(self) -> None:
        """A worker that ran at least ``stable`` seconds is restarted after the first
        delay, whatever came before."""
        self.assertEqual(_decide(deaths=6, ran_for=60.0), Restart(delay=1.0, deaths=1))
        self.assertEqual(_decide(deaths=6, ran_for=59.0), Restart(delay=60.0, deaths=7))
