"""The shared off-reactor refresh timing: periodic runs, refresh waiters, one run at a time."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rail.refresher import Refresher


class _Job:
    """A job whose runs the test finishes by hand."""

    def __init__(self) -> None:
        self.runs: list[defer.Deferred[Any]] = []

    def __call__(self) -> defer.Deferred[Any]:
        self.runs.append(defer.Deferred())
        return self.runs[-1]


class RefresherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.job = _Job()
        self.refresher = Refresher(self.job, clock=self.clock, interval=10, what="test job")

    def test_runs_every_interval_while_started(self) -> None:
        """Started, it runs after each interval; stopped, it schedules nothing."""
        self.refresher.start()
        self.clock.advance(10)
        self.assertEqual(len(self.job.runs), 1)
        self.job.runs[0].callback(None)
        self.clock.advance(10)
        self.assertEqual(len(self.job.runs), 2)
        self.job.runs[1].callback(None)
        self.successResultOf(self.refresher.stop())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refresh_during_a_run_gets_one_more_run(self) -> None:
        """A refresh that arrives while a run is under way is answered by the run after
        it, and two such refreshes share that one run."""
        first = self.refresher.refresh()
        second = self.refresher.refresh()
        third = self.refresher.refresh()
        self.assertEqual(len(self.job.runs), 1)
        self.job.runs[0].callback(None)
        self.successResultOf(first)
        self.assertNoResult(second)
        self.assertEqual(len(self.job.runs), 2)
        self.job.runs[1].callback(None)
        self.successResultOf(second)
        self.successResultOf(third)

    def test_stop_waits_for_the_running_job(self) -> None:
        """stop() fires only once a run in progress has finished."""
        self.refresher.start()
        self.refresher.refresh()
        stopped = self.refresher.stop()
        self.assertNoResult(stopped)
        self.job.runs[0].callback(None)
        self.successResultOf(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_failing_job_is_logged_and_the_next_run_comes(self) -> None:
        """A job's unexpected failure is logged as a bug; waiters still fire and the
        schedule goes on."""
        self.refresher.start()
        waiter = self.refresher.refresh()
        self.job.runs[0].errback(RuntimeError("boom"))
        self.successResultOf(waiter)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.clock.advance(10)
        self.assertEqual(len(self.job.runs), 2)
        self.job.runs[1].callback(None)
        self.successResultOf(self.refresher.stop())
