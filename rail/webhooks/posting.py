"""The POSTs of one kind of webhook job, each with its timeout on the runner's clock, and
what the two kinds that POST (inbound mail's webhooks, events) share around the runner.

Shared by the inbound-mail dispatcher and the event dispatcher: a POST ends as an
:data:`Attempt` (the application's answer, ``timeout after 30s``, or a local error as
:class:`Unreachable`), or, once the grace period of a stop is over and :meth:`Posts.cut`
cancelled it, as None: its job is then left untouched in the store.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.jobs.runner import Job, Runner, RunnerLimits
from rail.store.model import JobQueue, QueueLeases
from rail.webhooks.outcome import Attempt, Unreachable, WebhookPolicy

__all__ = ["Post", "PostingKind", "Posts", "WebhookLimits", "runner_limits"]

Post = Callable[[str, dict[str, str], bytes], Deferred[Attempt]]
"""``post(url, headers, body)``: one POST, as :meth:`WebhookClient.post` does it."""

_log = Logger()


class Posts:
    """Runs ``post(url, headers, body)`` calls, each cancelled after ``timeout`` seconds."""

    def __init__(self, clock: IReactorTime, post: Post, timeout: float, what: str) -> None:
        """``what``: the jobs in log lines (``webhook``, ``event``)."""
        self._clock = clock
        self._post = post
        self.timeout = timeout
        self._what = what
        self._running: set[Deferred[Attempt]] = set()
        self._cut = False

    def post(
        self, url: str, headers: dict[str, str], body: bytes, job_id: str
    ) -> Deferred[Attempt | None]:
        """POST ``body``; fires with the attempt, or None when cut (never fails)."""
        timeout = self.timeout
        try:
            posting = self._post(url, headers, body)
        except Exception:
            _log.failure("cannot start the {what} POST of {job_id}", what=self._what, job_id=job_id)
            return succeed(Unreachable("local error starting the POST"))
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            posting.cancel()

        timer = self._clock.callLater(timeout, expire)
        self._running.add(posting)

        def posted(outcome: Attempt | Failure) -> Attempt | None:
            if timer.active():
                timer.cancel()
            self._running.discard(posting)
            if self._cut:
                return None
            if timed_out:
                return Unreachable(f"timeout after {timeout:g}s")
            if isinstance(outcome, Failure):
                _log.failure(
                    "{what} POST of {job_id} failed", outcome, what=self._what, job_id=job_id
                )
                return Unreachable("local error during the POST")
            return outcome

        return posting.addBoth(posted)

    def cut(self) -> None:
        """Cancel every running POST: their outcome is None."""
        self._cut = True
        for posting in list(self._running):
            posting.cancel()


@attrs.frozen
class WebhookLimits:
    per_url: int = 4
    concurrency: int = 100
    backlog: int = 1000
    claim_batch: int = 200


def runner_limits(limits: WebhookLimits) -> RunnerLimits:
    """The runner's share of ``limits`` (``per_url`` is the kind's)."""
    return RunnerLimits(
        concurrency=limits.concurrency, backlog=limits.backlog, claim_batch=limits.claim_batch
    )


J = TypeVar("J", bound=Job)


class PostingKind(Generic[J]):
    """A kind of :class:`rail.jobs.runner.Runner` job that is one signed POST per job, at
    most ``per_url`` at once to one group: the set-up, reconfiguration, start and stop
    both such kinds share. A subclass supplies the rest of the kind (claim, group, work)."""

    def __init__(
        self,
        store: Any,
        clock: IReactorTime,
        *,
        post: Post,
        key: Any,
        policy: WebhookPolicy,
        limits: WebhookLimits,
        timeout: float,
        rng: random.Random,
        what: str,
        queue: JobQueue,
    ) -> None:
        """``key``: Rail's :class:`rail.webhooks.key.WebhookKey`; ``what``: the jobs in
        log lines (``webhook``, ``event``); ``queue``: the store's queue of these jobs,
        whose leases the runner keeps (``inbound``, ``events``)."""
        self._store = store
        self._clock = clock
        self._key = key
        self._policy = policy
        self._limits = limits
        self._rng = rng
        self._posts = Posts(clock, post, timeout, what)
        # A subclass completes the kind (claim, group, work): hence the ignore.
        self._runner: Runner[J] = Runner(
            self,  # type: ignore[arg-type]
            clock,
            runner_limits(limits),
            QueueLeases.of(store, queue),
        )

    def reconfigure(self, policy: WebhookPolicy, limits: WebhookLimits, timeout: float) -> None:
        """New retry policy, limits and timeout (SIGHUP); running POSTs keep theirs."""
        self._policy = policy
        self._limits = limits
        self._posts.timeout = timeout
        self._runner.reconfigure(runner_limits(limits))

    @property
    def in_flight(self) -> int:
        """Jobs claimed and not yet recorded."""
        return self._runner.in_flight

    @property
    def posting(self) -> int:
        """POSTs running now."""
        return self._runner.busy

    def wake(self) -> None:
        """New jobs may be due: claim now rather than at the next poll."""
        self._runner.wake()

    def stop(self, grace: float) -> Deferred[None]:
        """Stop claiming and starting POSTs; wait up to ``grace`` seconds for the running
        ones, then cancel them (their jobs stay untouched in the store); fires once every
        result is recorded."""
        return self._runner.stop(grace)

    def may_start(self, active: int, waiting: int) -> bool:
        """A POST per job, up to ``per_url`` at once to one group."""
        return active < self._limits.per_url

    def cut(self) -> None:
        self._posts.cut()
