"""The one runner of durable jobs: claims due jobs from the store, runs them within limits
and records their results. Each kind of job (outbound deliveries, inbound webhooks, event
webhooks) is a :class:`JobKind` on top of it, saying what to claim, how jobs are grouped
and limited, how to run them and how to record their results.

Only a bounded window of the store is in memory: at most ``backlog`` claimed jobs, waiting
per *group* (a recipient domain, a webhook URL), while the rest stays on disk until due.
A *worker* is started for a group while jobs wait for it, within ``concurrency`` workers
in all and the kind's rule per group (:meth:`JobKind.may_start`), groups in turn; a worker
takes its group's jobs with :meth:`Runner.take`. A job stays "in flight", and so is never
claimed twice, from its claim until its result is on disk (or, when stopping, until it is
left untouched in the store).

New work is found three ways: :meth:`Runner.wake` (the store saw new work), an
:meth:`Runner.offer` (the store hands over the jobs it just stored, so they start without
a claim reading them back) and a one-second poll for due retries. A finishing worker
claims again only when the last claim may have left due jobs behind (the backlog was full,
or the claim was). While jobs are in flight, a claim is made only for a quarter of the
backlog (or ``claim_batch``) at least: the store reads past every job in flight to find
the others, so claims of a few jobs each, as a nearly full backlog drains, would cost
that reading per few jobs (measured: 2,000 rows read per 53 jobs claimed, 40% of the
SQLite writer's time in a delivery benchmark).

A result the store cannot write (a full disk) keeps its job in flight and is written again
every :data:`RECORD_RETRY` seconds: claiming the job again would repeat an attempt whose
outcome is known, only not yet on disk.

Stopping: no new claims or workers; running workers get ``grace`` seconds, then the kind
cuts them (:meth:`JobKind.cut`) and their jobs stay untouched in the store; the Deferred
:meth:`Runner.stop` returns fires once every worker has ended and every result being
written is on disk.

Leases (when several nodes share the store, :mod:`rail.store.lease`): a claim holds its
jobs for ``lease`` seconds; the runner renews the leases of all its jobs in flight every
third of that, in one store operation, so a job may run longer than a lease. Stopping, it
releases at once the jobs that had not started (another node may take them now), keeps
renewing those still running through the grace period (they are being worked on), and
releases those cut or left once every worker has ended. A result the store answers
:class:`~rail.store.model.Stale` (another node took the job after this node's lease ended)
was not written: the job simply leaves the flight, and :meth:`JobKind.recorded` is not
told (the store's observers log and count it). A node that dies stops renewing: its jobs
are due to the others' one-second poll once their lease ends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Generic, Protocol, TypeVar

import attrs
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.store.model import Stale

__all__ = ["IDLE_POLL", "RECORD_RETRY", "Job", "JobKind", "JobLeases", "Runner", "RunnerLimits"]

_log = Logger()

IDLE_POLL = 1.0
"""Seconds between claims while nothing wakes the runner: how late a due retry may start."""
RECORD_RETRY = 10.0
"""Seconds between tries to record a result the store could not write."""


class Job(Protocol):
    """What the runner needs of a job: the key that identifies it among those in flight."""

    @property
    def key(self) -> Hashable: ...


J = TypeVar("J", bound=Job)


class JobKind(Protocol[J]):
    """One kind of durable job: the policy the runner applies."""

    what: str
    """The jobs, in log lines: ``deliveries``, ``webhooks``, ``events``."""

    def claim(self, now: float, limit: int, exclude: frozenset[Any]) -> Deferred[list[J]]:
        """Up to ``limit`` jobs due at ``now``, none whose key is in ``exclude``."""

    def group(self, job: J) -> str:
        """The group ``job`` waits in (its per-group limit applies)."""

    def may_start(self, active: int, waiting: int) -> bool:
        """Whether another worker may start for a group with ``active`` workers and
        ``waiting`` jobs (``waiting`` > 0)."""

    def work(self, group: str) -> Deferred[None]:
        """Run a worker for ``group``: it takes its jobs with :meth:`Runner.take` (the
        first one before it returns) and records each one's result with
        :meth:`Runner.record`."""

    def write(self, job: J, result: Any) -> Deferred[Any]:
        """Write ``job``'s ``result`` to the store."""

    def recorded(self, job: J, result: Any, answer: Any) -> None:
        """``job``'s ``result`` is on disk (the store answered ``answer``)."""

    def cut(self) -> None:
        """The grace period is over: abort what the workers are doing."""

    def describe(self, job: J) -> str:
        """``job`` in an error line: ``delivery of <id>``, ``the webhook of <id>``..."""


class JobLeases(Protocol):
    """The store's leases on one kind's jobs (:class:`rail.store.model.QueueLeases`)."""

    @property
    def lease(self) -> float | None:
        """Seconds a claim holds its jobs unless renewed; None: no leases."""

    def renew(self, keys: list[Any], now: float) -> Deferred[Any]:
        """Extend the leases of the jobs keyed ``keys`` to ``now`` + the lease."""

    def release(self, jobs: list[Any]) -> Deferred[Any]:
        """Give up the leases of ``jobs``."""


@attrs.frozen
class RunnerLimits:
    """``concurrency``: workers in all; ``backlog``: jobs in flight; ``claim_batch``: jobs
    read by one claim."""

    concurrency: int
    backlog: int
    claim_batch: int


class Runner(Generic[J]):
    """Feeds due jobs of one ``kind`` to its workers; see the module docstring."""

    def __init__(
        self,
        kind: JobKind[J],
        clock: IReactorTime,
        limits: RunnerLimits,
        leases: JobLeases | None = None,
    ) -> None:
        """``leases``: the store's leases on this kind's jobs, when it has them (read at
        :meth:`start`: start the store first)."""
        self._kind = kind
        self._clock = clock
        self.limits = limits
        self._leases = leases
        self._renewal: IDelayedCall | None = None
        self._released: list[J] = []
        self._waiting: dict[str, deque[J]] = {}
        self._in_flight: set[Any] = set()
        self._active: dict[str, int] = {}
        self._busy = 0
        self._workers: set[Deferred[None]] = set()
        self._records: set[Deferred[Any]] = set()
        self._unrecorded: dict[Any, IDelayedCall] = {}
        self._claiming = False
        self._again = False
        self._more = False  # due jobs may be waiting beyond the backlog or the last batch
        self._filling = False
        self._refill = False
        self._poll: IDelayedCall | None = None
        self.running = False
        self.cut = False
        """True once the grace period of a stop is over."""

    @property
    def in_flight(self) -> int:
        """Jobs claimed and not yet recorded."""
        return len(self._in_flight)

    @property
    def busy(self) -> int:
        """Workers running now."""
        return self._busy

    def reconfigure(self, limits: RunnerLimits) -> None:
        """New limits (SIGHUP); running workers finish as they are."""
        self.limits = limits
        self.fill()

    def start(self) -> None:
        self.running = True
        self._schedule_renewal()
        self.wake()

    def wake(self) -> None:
        """New work may be due: claim now rather than at the next poll."""
        if not self.running:
            return
        if self._claiming:
            self._again = True
            return
        if self._poll is not None and self._poll.active():
            self._poll.cancel()
        self._poll = None
        self._claim()

    def offer(self, jobs: Iterable[J]) -> None:
        """Jobs just stored, handed over by the store: they start without a claim reading
        them back. Beyond the backlog they stay for a later claim (released, with leases:
        the store stored them held by this node)."""
        if not self.running:
            return
        taken = False
        left: list[J] = []
        in_flight, group = self._in_flight, self._kind.group
        for job in jobs:
            key = job.key
            if key in in_flight:
                continue
            if len(in_flight) >= self.limits.backlog:
                self._more = True  # a finishing worker wakes the claim for these
                left.append(job)
                continue
            in_flight.add(key)
            self._queue(group(job)).append(job)
            taken = True
        self._release_leases(left)  # stored under this node's lease: free them for a claim
        if taken:
            self.fill()

    def stop(self, grace: float) -> Deferred[None]:
        """Stop claiming and starting workers; wait up to ``grace`` seconds for the running
        ones, then cut them (their jobs stay untouched); fires once every result is
        recorded."""
        self.running = False
        if self._poll is not None and self._poll.active():
            self._poll.cancel()
        self._poll = None
        unstarted = [job for jobs in self._waiting.values() for job in jobs]
        for job in unstarted:
            self._in_flight.discard(job.key)
        self._waiting.clear()
        self._release_leases(unstarted)
        if self._unrecorded:
            _log.warn(
                "{count} {what} results could not be recorded; those jobs are run again"
                " after the restart",
                count=len(self._unrecorded),
                what=self._kind.what,
            )
        for key, call in self._unrecorded.items():
            call.cancel()
            self._in_flight.discard(key)
        self._unrecorded.clear()
        timer = self._clock.callLater(grace, self._cut_all)
        done: Deferred[None] = Deferred()

        def finished(_: object) -> None:
            if timer.active():
                timer.cancel()
            if self._renewal is not None and self._renewal.active():
                self._renewal.cancel()
            self._renewal = None
            released, self._released = self._released, []
            self._release_leases(released)
            records = DeferredList(list(self._records), consumeErrors=True)
            records.addBoth(lambda _: done.callback(None))

        DeferredList(list(self._workers), consumeErrors=True).addBoth(finished)
        return done

    def _release_leases(self, jobs: list[J]) -> None:
        """Give up the leases of ``jobs`` (left to other claims); a stop waits for the write
        as for results."""
        if self._leases is None or self._leases.lease is None or not jobs:
            return
        releasing = self._leases.release(jobs)
        self._records.add(releasing)

        def done(outcome: object) -> None:
            self._records.discard(releasing)
            if isinstance(outcome, Failure):
                _log.error(
                    "cannot release the leases of {count} {what}: {error}; other nodes take"
                    " them when the leases end",
                    count=len(jobs),
                    what=self._kind.what,
                    error=outcome.getErrorMessage(),
                )

        releasing.addBoth(done)

    # -- leases ---------------------------------------------------------------------------

    def _schedule_renewal(self) -> None:
        lease = None if self._leases is None else self._leases.lease
        if lease is not None:
            self._renewal = self._clock.callLater(lease / 3, self._renew)

    def _renew(self) -> None:
        """Renew the leases of every job in flight (one store operation), then again in a
        third of a lease; a failure is logged (the next round tries again, with two thirds
        of the lease still to go)."""
        assert self._leases is not None
        keys = list(self._in_flight)
        if keys:
            self._leases.renew(keys, self._clock.seconds()).addErrback(
                lambda failure: _log.error(
                    "cannot renew the leases of {count} {what}: {error}",
                    count=len(keys),
                    what=self._kind.what,
                    error=failure.getErrorMessage(),
                )
            )
        self._schedule_renewal()

    def _cut_all(self) -> None:
        self.cut = True
        self._kind.cut()

    # -- claiming -------------------------------------------------------------------------

    def _queue(self, group: str) -> deque[J]:
        waiting = self._waiting.get(group)
        if waiting is None:
            waiting = self._waiting[group] = deque()
        return waiting

    def _claim(self) -> None:
        room = self.limits.backlog - len(self._in_flight)
        if room <= 0 or (self._in_flight and room < self._least_claim()):
            # A claim reads past every job in flight (the store skips them): one for a
            # few jobs while the backlog is nearly full would cost as much as a large
            # one. A finishing job wakes us once the backlog is half empty.
            self._more = True
            return
        self._claiming = True
        self._more = False
        limit = min(room, self.limits.claim_batch)
        claimed = self._kind.claim(self._clock.seconds(), limit, frozenset(self._in_flight))
        claimed.addCallbacks(lambda jobs: self._claimed(jobs, limit), self._claim_failed)

    def _least_claim(self) -> int:
        """The fewest jobs worth a claim while others are in flight."""
        return min(self.limits.claim_batch, max(1, self.limits.backlog // 4))

    def _claimed(self, jobs: list[J], limit: int) -> None:
        self._claiming = False
        if not self.running:
            return
        in_flight, group = self._in_flight, self._kind.group
        for job in jobs:
            key = job.key
            if key in in_flight:
                continue  # offered while the claim ran
            in_flight.add(key)
            self._queue(group(job)).append(job)
        if len(jobs) >= limit:
            self._more = True
        self.fill()
        if self._again or len(jobs) >= limit:
            self._again = False
            if len(self._in_flight) < self.limits.backlog:
                self._claim()
                return
        self._schedule_poll()

    def _claim_failed(self, failure: Failure) -> None:
        self._claiming = False
        _log.error(
            "cannot read due {what}: {error}",
            what=self._kind.what,
            error=failure.getErrorMessage(),
        )
        self._schedule_poll()

    def _schedule_poll(self) -> None:
        if self.running and (self._poll is None or not self._poll.active()):
            self._poll = self._clock.callLater(IDLE_POLL, self.wake)

    # -- workers --------------------------------------------------------------------------

    def fill(self) -> None:
        """Start workers for waiting jobs as the limits allow, groups in turn.

        Workers may finish synchronously (and call back here): such a nested call only
        asks the running loop for another round.
        """
        if not self.running:
            return
        if self._filling:
            self._refill = True
            return
        self._filling = True
        try:
            self._refill = True
            while self._refill:
                self._refill = False
                self._fill_round()
        finally:
            self._filling = False

    def _fill_round(self) -> None:
        may_start = self._kind.may_start
        for group, jobs in list(self._waiting.items()):
            if self._busy >= self.limits.concurrency or not self.running:
                return
            if not jobs:
                self._waiting.pop(group, None)
                continue
            active = self._active.get(group, 0)
            if not may_start(active, len(jobs)):
                continue
            self._active[group] = active + 1
            self._busy += 1
            worker = self._kind.work(group)
            self._workers.add(worker)
            worker.addBoth(self._worker_done, worker, group)
            self._refill = True

    def _worker_done(self, result: object, worker: Deferred[None], group: str) -> None:
        self._workers.discard(worker)
        self._busy -= 1
        self._active[group] -= 1
        if not self._active[group]:
            del self._active[group]
        if isinstance(result, Failure):
            _log.failure(
                "{what} worker for {group} failed", result, what=self._kind.what, group=group
            )
        self.fill()
        self._wake_if_half_empty()

    def _wake_if_half_empty(self) -> None:
        """Claim again once the backlog is half empty, if the last claim was cut short."""
        if self._more and self.running and len(self._in_flight) < self.limits.backlog // 2:
            self.wake()

    def take(self, group: str) -> J | None:
        """The next job waiting in ``group``, or None (none, or stopping)."""
        jobs = self._waiting.get(group)
        if not self.running or not jobs:
            return None
        return jobs.popleft()

    def take_all(self, group: str) -> list[J]:
        """Every job waiting in ``group`` now (they stay in flight)."""
        jobs = self._waiting.pop(group, None)
        if not jobs:
            return []
        taken = list(jobs)
        jobs.clear()  # a fill round holding this deque sees it empty
        return taken

    def withdraw(self, same: Callable[[J], bool]) -> list[J]:
        """Take every waiting job for which ``same(job)`` holds out of the waiting lists
        (they stay in flight): the siblings of a quarantined job."""
        taken: list[J] = []
        for waiting in self._waiting.values():
            found = [job for job in waiting if same(job)]
            for job in found:
                waiting.remove(job)  # in place: a fill round may hold this deque
            taken.extend(found)
        return taken

    def release(self, job: J) -> None:
        """Leave ``job`` untouched in the store (stopping, or cut): no longer in flight.
        Its lease, if any, is given up once the workers have ended (or at once when
        running)."""
        self._in_flight.discard(job.key)
        if self.running:
            self._release_leases([job])
        else:
            self._released.append(job)

    # -- results --------------------------------------------------------------------------

    def record(self, job: J, result: Any) -> None:
        """Write ``job``'s ``result`` (:meth:`JobKind.write`); once on disk tell the kind
        (:meth:`JobKind.recorded`) and let the job go. If the store cannot write it, keep
        the job in flight and try again every :data:`RECORD_RETRY` seconds while
        running."""
        writing = self._kind.write(job, result)
        self._records.add(writing)

        def done(outcome: object) -> None:
            self._records.discard(writing)
            if isinstance(outcome, Failure):
                if self.running:
                    _log.error(
                        "cannot record {job}: {error}; trying again in {delay}s",
                        job=self._kind.describe(job),
                        error=outcome.getErrorMessage(),
                        delay=RECORD_RETRY,
                    )
                    self._unrecorded[job.key] = self._clock.callLater(
                        RECORD_RETRY, self._retry_record, job, result
                    )
                    return
                _log.error(
                    "cannot record {job}: {error}; it is run again after the restart",
                    job=self._kind.describe(job),
                    error=outcome.getErrorMessage(),
                )
            elif not isinstance(outcome, Stale):
                self._kind.recorded(job, result, outcome)
            self._in_flight.discard(job.key)
            self._wake_if_half_empty()  # the last workers may have ended before this

        writing.addBoth(done)

    def _retry_record(self, job: J, result: Any) -> None:
        del self._unrecorded[job.key]
        self.record(job, result)

    def quarantine(
        self,
        jobs: list[J],
        write: Deferred[bool],
        quarantined: Callable[[list[J]], object],
    ) -> None:
        """``write`` takes ``jobs`` out for good; they stay in flight, so no claim hands
        them out again, until that is on disk. ``quarantined(jobs)`` is called when it
        was (``write`` fired True)."""
        self._records.add(write)

        def done(outcome: object) -> None:
            self._records.discard(write)
            for each in jobs:
                self._in_flight.discard(each.key)
            if outcome is True:
                quarantined(jobs)
            if isinstance(outcome, Failure):
                _log.error(
                    "cannot quarantine {job}: {error}",
                    job=self._kind.describe(jobs[0]),
                    error=outcome.getErrorMessage(),
                )

        write.addBoth(done)
