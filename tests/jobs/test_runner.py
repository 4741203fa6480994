"""The job runner with a scripted kind on a Clock: limits, hand-overs, recording, stopping."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from rail.jobs.runner import IDLE_POLL, RECORD_RETRY, Runner, RunnerLimits
from rail.store.model import Stale


@attrs.frozen
class _Job:
    key: str
    group: str


class _Kind:
    """Claims from ``due``; each worker runs one job until the test fires it."""

    what = "tests"

    def __init__(self, per_group: int) -> None:
        self.per_group = per_group
        self.due: list[_Job] = []
        self.claims: list[tuple[int, frozenset[Any]]] = []
        self.running: dict[str, Deferred[None]] = {}
        self.done: list[str] = []
        self.failing_writes = 0
        self.writes = 0
        self.cut_called = False
        self.runner: Runner[_Job]

    def claim(self, now: float, limit: int, exclude: frozenset[Any]) -> Deferred[list[_Job]]:
        self.claims.append((limit, exclude))
        return succeed([j for j in self.due if j.key not in exclude][:limit])

    def group(self, job: _Job) -> str:
        return job.group

    def may_start(self, active: int, waiting: int) -> bool:
        return active < self.per_group

    def work(self, group: str) -> Deferred[None]:
        job = self.runner.take(group)
        assert job is not None
        done: Deferred[None] = Deferred()
        self.running[job.key] = done

        def finished(_: object) -> None:
            del self.running[job.key]
            if self.runner.cut:
                self.runner.release(job)
                return
            self.due.remove(job)
            self.runner.record(job, "ok")

        return done.addCallback(finished)

    def cut(self) -> None:
        self.cut_called = True
        for done in list(self.running.values()):
            done.callback(None)

    def describe(self, job: _Job) -> str:
        return f"job {job.key}"

    def write(self, job: _Job, result: str) -> Deferred[None]:
        self.writes += 1
        if self.failing_writes:
            self.failing_writes -= 1
            return fail(OSError("disk full"))
        return succeed(None)

    def recorded(self, job: _Job, result: str, answer: object) -> None:
        self.done.append(job.key)


class RunnerTests(SynchronousTestCase):
    def make(self, per_group: int = 2, **limits: int) -> tuple[_Kind, Runner[_Job], Clock]:
        clock = Clock()
        kind = _Kind(per_group)
        values = {"concurrency": 3, "backlog": 10, "claim_batch": 10, **limits}
        runner: Runner[_Job] = Runner(kind, clock, RunnerLimits(**values))
        kind.runner = runner
        return kind, runner, clock

    def test_limits_per_group_and_in_all(self) -> None:
        """At most ``per_group`` workers per group and ``concurrency`` in all, groups in
        turn; a finishing worker lets the next waiting job start."""
        kind, runner, clock = self.make()
        kind.due = [_Job(f"a{n}", "a") for n in range(3)] + [_Job("b0", "b")]
        runner.start()
        self.assertEqual(sorted(kind.running), ["a0", "a1", "b0"])
        self.assertEqual((runner.busy, runner.in_flight), (3, 4))
        kind.running["a0"].callback(None)
        self.assertEqual(sorted(kind.running), ["a1", "a2", "b0"])
        self.assertEqual((kind.done, runner.in_flight), (["a0"], 3))
        stopped = runner.stop(0)
        clock.advance(0)  # cut: the running jobs stay untouched
        self.successResultOf(stopped)
        self.assertEqual((runner.in_flight, clock.getDelayedCalls()), (0, []))

    def test_no_claim_for_a_few_jobs_while_the_backlog_is_full(self) -> None:
        """With jobs in flight, a claim is made for a quarter of the backlog at least
        (each claim reads past every job in flight): as a full backlog of 12 drains, no
        claim is made for 1 or 2 jobs, even when woken; once it is half empty, one claim
        takes the room."""
        kind, runner, clock = self.make(per_group=20, concurrency=20, backlog=12, claim_batch=12)
        kind.due = [_Job(f"j{n}", "g") for n in range(30)]
        runner.start()
        self.assertEqual([limit for limit, _ in kind.claims], [12])
        for key in ("j0", "j1"):
            kind.running[key].callback(None)
            runner.wake()  # new work, or the poll: not worth a claim yet
        self.assertEqual([limit for limit, _ in kind.claims], [12])
        for key in ("j2", "j3", "j4", "j5"):
            kind.running[key].callback(None)
        self.assertEqual([limit for limit, _ in kind.claims], [12])
        kind.running["j6"].callback(None)  # five left in flight: under half
        self.assertEqual([limit for limit, _ in kind.claims], [12, 7])
        self.assertEqual(runner.in_flight, 12)

    def test_a_late_record_wakes_the_claim(self) -> None:
        """When the workers end before their results are written, the last write that
        leaves the backlog half empty claims again (nothing else would until the poll
        that the full backlog cancelled)."""
        kind, runner, clock = self.make(per_group=20, concurrency=20, backlog=4, claim_batch=4)
        kind.due = [_Job(f"j{n}", "g") for n in range(8)]
        writes: list[Deferred[None]] = []
        kind.write = lambda job, result: writes.append(Deferred()) or writes[-1]  # type: ignore[method-assign]
        runner.start()
        for key in ("j0", "j1", "j2", "j3"):
            kind.running[key].callback(None)
        self.assertEqual([limit for limit, _ in kind.claims], [4])
        for write in writes[:3]:
            write.callback(None)
        self.assertEqual([limit for limit, _ in kind.claims], [4, 3])
        self.assertEqual(sorted(kind.running), ["j4", "j5", "j6"])

    def test_offer_starts_without_claim_and_respects_backlog(self) -> None:
        """Offered jobs start at once without a claim; beyond the backlog they are left
        for a later claim, which a finishing worker triggers."""
        kind, runner, clock = self.make(per_group=5, concurrency=5, backlog=2)
        runner.start()
        claims = len(kind.claims)
        jobs = [_Job(f"a{n}", "a") for n in range(3)]
        kind.due = list(jobs)
        runner.offer(jobs)
        self.assertEqual((sorted(kind.running), len(kind.claims)), (["a0", "a1"], claims))
        kind.running["a0"].callback(None)
        kind.running["a1"].callback(None)
        self.assertEqual(sorted(kind.running), ["a2"])
        self.assertEqual(kind.claims[-1][1], frozenset())
        kind.running["a2"].callback(None)
        self.successResultOf(runner.stop(0))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_idle_poll_finds_due_jobs(self) -> None:
        """With nothing to wake it, the runner claims again every IDLE_POLL seconds."""
        kind, runner, clock = self.make()
        runner.start()
        kind.due = [_Job("a0", "a")]
        clock.advance(IDLE_POLL - 0.01)
        self.assertEqual(kind.running, {})
        clock.advance(0.01)
        self.assertEqual(list(kind.running), ["a0"])
        kind.running["a0"].callback(None)
        self.successResultOf(runner.stop(0))

    def test_unwritable_result_kept_in_flight_and_written_later(self) -> None:
        """A result the store cannot write keeps its job in flight (no second run) and
        is written again RECORD_RETRY seconds later."""
        kind, runner, clock = self.make()
        job = _Job("a0", "a")
        kind.due = [job]
        kind.failing_writes = 1
        runner.start()
        kind.running["a0"].callback(None)
        self.assertEqual((runner.in_flight, kind.done, kind.writes), (1, [], 1))
        clock.advance(RECORD_RETRY - 0.1)
        self.assertEqual((runner.in_flight, kind.due, kind.running), (1, [], {}))
        clock.advance(0.1)
        self.assertEqual((runner.in_flight, kind.done, kind.writes), (0, ["a0"], 2))
        self.flushLoggedErrors()
        runner.stop(0)
        clock.advance(0)

    def test_stop_waits_for_grace_then_cuts(self) -> None:
        """Stopping waits ``grace`` seconds for running workers, then cuts them; the
        Deferred fires once they ended and nothing is left scheduled."""
        kind, runner, clock = self.make()
        kind.due = [_Job("a0", "a")]
        runner.start()
        stopped = runner.stop(5)
        clock.advance(4.9)
        self.assertNoResult(stopped)
        self.assertFalse(kind.cut_called)
        clock.advance(0.1)
        self.successResultOf(stopped)
        self.assertTrue(kind.cut_called)
        self.assertEqual((runner.in_flight, kind.done, clock.getDelayedCalls()), (0, [], []))


class _Leases:
    """The store's leases as the runner sees them: records each renewal and release;
    ``pending`` holds the releases not yet answered when ``hold`` is set."""

    def __init__(self, lease: float | None) -> None:
        self.lease = lease
        self.renewals: list[tuple[float, list[Any]]] = []
        self.released: list[list[str]] = []
        self.hold = False
        self.pending: list[Deferred[None]] = []

    def renew(self, keys: list[Any], now: float) -> Deferred[None]:
        self.renewals.append((now, sorted(keys)))
        return succeed(None)

    def release(self, jobs: list[Any]) -> Deferred[None]:
        self.released.append(sorted(job.key for job in jobs))
        if not self.hold:
            return succeed(None)
        answer: Deferred[None] = Deferred()
        self.pending.append(answer)
        return answer


class RunnerLeaseTests(SynchronousTestCase):
    def make(
        self, lease: float | None = 60.0, **limits: int
    ) -> tuple[_Kind, Runner[_Job], Clock, _Leases]:
        clock = Clock()
        kind = _Kind(per_group=1)
        leases = _Leases(lease)
        values = {"concurrency": 1, "backlog": 10, "claim_batch": 10, **limits}
        runner: Runner[_Job] = Runner(kind, clock, RunnerLimits(**values), leases)
        kind.runner = runner
        return kind, runner, clock, leases

    def test_renews_in_flight_jobs_every_third_of_a_lease(self) -> None:
        """Every lease/3 seconds one renewal names every job in flight (running or
        waiting); a round with nothing in flight asks nothing of the store."""
        kind, runner, clock, leases = self.make()
        runner.start()
        clock.advance(20)
        self.assertEqual(leases.renewals, [])
        kind.due = [_Job("a0", "a"), _Job("a1", "a")]
        runner.wake()
        clock.advance(19.9)
        self.assertEqual(leases.renewals, [])
        clock.advance(0.1)
        self.assertEqual(leases.renewals, [(40.0, ["a0", "a1"])])
        kind.running["a0"].callback(None)
        clock.advance(20)
        self.assertEqual(leases.renewals[-1], (60.0, ["a1"]))
        kind.running["a1"].callback(None)
        self.successResultOf(runner.stop(0))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_offer_beyond_the_backlog_releases_the_rest(self) -> None:
        """Jobs offered beyond the backlog (stored under this node's lease) are released
        at once, so a claim (this node's or another's) can take them."""
        kind, runner, clock, leases = self.make(backlog=2)
        runner.start()
        jobs = [_Job(f"a{n}", "a") for n in range(4)]
        kind.due = list(jobs)
        runner.offer(jobs)
        self.assertEqual(runner.in_flight, 2)
        self.assertEqual(leases.released, [["a2", "a3"]])
        runner.offer(jobs[:1])  # already in flight: nothing to release
        self.assertEqual(leases.released, [["a2", "a3"]])
        kind.running["a0"].callback(None)
        kind.running["a1"].callback(None)
        kind.running["a2"].callback(None)
        kind.running["a3"].callback(None)
        self.successResultOf(runner.stop(0))

    def test_a_job_outlasts_its_lease(self) -> None:
        """A job running for many leases is renewed all along."""
        kind, runner, clock, leases = self.make(lease=15.0)
        kind.due = [_Job("a0", "a")]
        runner.start()
        clock.pump([5.0] * 60)  # 300 s: twenty leases
        self.assertEqual(len(leases.renewals), 60)
        self.assertEqual({tuple(keys) for _, keys in leases.renewals}, {("a0",)})
        kind.running["a0"].callback(None)
        self.successResultOf(runner.stop(0))

    def test_no_leases_no_renewal(self) -> None:
        """A store without leases (SQLite) is never asked to renew or release."""
        kind, runner, clock, leases = self.make(lease=None)
        kind.due = [_Job("a0", "a"), _Job("a1", "a")]
        runner.start()
        clock.advance(600)
        stopped = runner.stop(0)
        clock.advance(0)
        self.successResultOf(stopped)
        self.assertEqual((leases.renewals, leases.released), ([], []))

    def test_stop_releases_unstarted_at_once_and_cut_ones_at_the_end(self) -> None:
        """Stopping releases the jobs that had not started at once, keeps renewing the
        running ones through the grace period, releases those cut once every worker has
        ended (the stop waits for that write), then renews no more."""
        kind, runner, clock, leases = self.make()
        kind.due = [_Job("a0", "a"), _Job("a1", "a"), _Job("a2", "a")]
        runner.start()
        self.assertEqual(list(kind.running), ["a0"])
        leases.hold = True
        stopped = runner.stop(30)
        self.assertEqual(leases.released, [["a1", "a2"]])
        leases.pending.pop().callback(None)
        clock.advance(20)
        self.assertEqual(leases.renewals, [(20.0, ["a0"])])
        clock.advance(10)  # grace over: a0 is cut
        self.assertEqual(leases.released, [["a1", "a2"], ["a0"]])
        self.assertNoResult(stopped)
        leases.pending.pop().callback(None)
        self.successResultOf(stopped)
        self.assertEqual((runner.in_flight, clock.getDelayedCalls()), (0, []))

    def test_failed_release_is_logged_and_stop_ends(self) -> None:
        """A release the store cannot write is logged (the leases end by themselves);
        the stop still ends."""
        kind, runner, clock, leases = self.make()
        kind.due = [_Job("a0", "a"), _Job("a1", "a")]
        runner.start()
        leases.hold = True
        with capturedLogs() as events:
            stopped = runner.stop(0)
            leases.pending.pop().errback(OSError("database gone"))
            clock.advance(0)
            leases.pending.pop().errback(OSError("database gone"))
        self.successResultOf(stopped)
        lines = [formatEvent(event) for event in events if "release" in event["log_format"]]
        self.assertEqual(
            lines,
            [
                "cannot release the leases of 1 tests: database gone; other nodes take"
                " them when the leases end"
            ]
            * 2,
        )

    def test_stale_result_leaves_the_flight_untold(self) -> None:
        """A result the store answers Stale (another node took the job) is not told to
        the kind as recorded; the job leaves the flight and is not written again."""
        kind, runner, clock, leases = self.make()
        job = _Job("a0", "a")
        kind.due = [job]
        stale = Stale("outbound", "a0", "held by B")
        kind.write = lambda job, result: succeed(stale)  # type: ignore[method-assign]
        runner.start()
        kind.running["a0"].callback(None)
        self.assertEqual((runner.in_flight, kind.done), (0, []))
        clock.advance(RECORD_RETRY * 2)
        self.assertEqual(kind.done, [])
        self.successResultOf(runner.stop(0))
