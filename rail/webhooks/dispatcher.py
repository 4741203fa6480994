"""The webhook dispatcher: claims due webhook jobs from the inbound spool and POSTs them.

The house pattern of :mod:`rail.delivery.scheduler`, smaller: a bounded window of claimed
jobs (``backlog``) waits per webhook URL; at most ``per_url`` POSTs run at once to one URL
and ``concurrency`` in all. Each POST is signed at the moment it starts
(:mod:`rail.webhooks.signing`), gets ``timeout`` seconds on the dispatcher's clock, and its
:data:`Attempt` becomes a :class:`WebhookResult` by :func:`rail.webhooks.outcome.decide`.
Results are recorded without waiting; a job stays "in flight" (never claimed twice) until
its result is on disk. A job whose POST cannot even be built (its message makes the payload
or signing raise) is quarantined with every job of its message: ``failed`` for good, no
DSN, no retry. A permanent failure queues a DSN when the job allows bounces (the
store checks again). The store hands over the jobs of newly spooled mail
(``observe_inbound``), so they start without a claim reading the message back; due
retries are found by a one-second poll. A finishing POST claims again only when the last
claim may have left due jobs behind (the backlog was full, or the claim was).

Stopping: no new claims or POSTs; running POSTs get ``grace`` seconds, then they are
cancelled and their jobs left untouched in the spool: after a restart they are POSTed
again, so an application may see the same webhook twice and must dedupe by
``webhook-id`` (the same for every attempt of a job).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.inbound.model import WebhookJob, WebhookResult
from rail.store.deliveries import DSNBuilder
from rail.webhooks.key import WebhookKey
from rail.webhooks.log import log_attempt, log_final, log_quarantined
from rail.webhooks.outcome import Attempt, Unreachable, WebhookPolicy, decide
from rail.webhooks.payload import webhook_body
from rail.webhooks.signing import webhook_headers, webhook_id

__all__ = ["Dispatcher", "IWebhookObserver", "Post", "WebhookLimits"]

_log = Logger()

_IDLE_POLL = 1.0

Post = Callable[[str, dict[str, str], bytes], Deferred[Attempt]]
"""``post(url, headers, body)``: one POST, as :meth:`WebhookClient.post` does it."""


@attrs.frozen
class WebhookLimits:
    per_url: int = 4
    concurrency: int = 100
    backlog: int = 1000
    claim_batch: int = 200


class IWebhookObserver(Protocol):
    """Told about every recorded attempt (stats, metrics)."""

    def attempt(self, job: WebhookJob, result: WebhookResult, seconds: float) -> None: ...


class _Quiet:
    def attempt(self, job: WebhookJob, result: WebhookResult, seconds: float) -> None:
        pass


class Dispatcher:
    """Feeds due webhook jobs to POSTs; see the module docstring. ``store`` is an
    :class:`rail.inbound.model.IInboundStore`."""

    def __init__(
        self,
        store: Any,
        clock: IReactorTime,
        *,
        post: Post,
        key: WebhookKey,
        dsn: DSNBuilder,
        policy: WebhookPolicy,
        limits: WebhookLimits,
        timeout: float,
        rng: random.Random,
        observer: IWebhookObserver | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._post = post
        self._key = key
        self._dsn = dsn
        self._policy = policy
        self._limits = limits
        self._timeout = timeout
        self._rng = rng
        self._observer: IWebhookObserver = observer or _Quiet()
        self._waiting: dict[str, deque[WebhookJob]] = {}
        self._in_flight: set[tuple[str, str]] = set()
        self._active: dict[str, int] = {}
        self._posts: dict[tuple[str, str], Deferred[Any]] = {}
        self._finished: dict[tuple[str, str], Deferred[None]] = {}
        self._records: set[Deferred[Any]] = set()
        self._claiming = False
        self._again = False
        self._more = False  # due jobs may be waiting beyond the backlog or the last batch
        self._filling = False
        self._refill = False
        self._poll: IDelayedCall | None = None
        self._running = False
        self._cut = False

    def reconfigure(self, policy: WebhookPolicy, limits: WebhookLimits, timeout: float) -> None:
        """New retry policy, limits and timeout (SIGHUP); running POSTs keep theirs."""
        self._policy = policy
        self._limits = limits
        self._timeout = timeout
        self._fill()

    @property
    def in_flight(self) -> int:
        """Jobs claimed and not yet recorded."""
        return len(self._in_flight)

    @property
    def posting(self) -> int:
        """POSTs running now."""
        return sum(self._active.values())

    def start(self) -> None:
        self._running = True
        self._store.observe_inbound(self.offer)
        self.wake()

    def wake(self) -> None:
        """New inbound mail may be due: claim now rather than at the next poll."""
        if not self._running:
            return
        if self._claiming:
            self._again = True
            return
        if self._poll is not None and self._poll.active():
            self._poll.cancel()
        self._poll = None
        self._claim()

    def offer(self, jobs: list[WebhookJob]) -> None:
        """Jobs of mail just spooled, handed over by the store: they start without a
        claim reading them back. Beyond the backlog they stay for a later claim."""
        if not self._running:
            return
        taken = False
        for job in jobs:
            if job.key in self._in_flight:
                continue
            if len(self._in_flight) >= self._limits.backlog:
                self._more = True  # a finishing POST wakes the claim for these
                break
            self._in_flight.add(job.key)
            self._waiting.setdefault(job.url, deque()).append(job)
            taken = True
        if taken:
            self._fill()

    def stop(self, grace: float) -> Deferred[None]:
        """Stop claiming and starting POSTs; wait up to ``grace`` seconds for the running
        ones, then cancel them (their jobs stay untouched); fires once every result is
        recorded."""
        self._running = False
        if self._poll is not None and self._poll.active():
            self._poll.cancel()
        self._poll = None
        for jobs in self._waiting.values():
            for job in jobs:
                self._in_flight.discard(job.key)
        self._waiting.clear()
        timer = self._clock.callLater(grace, self._cut_all)
        done: Deferred[None] = Deferred()

        def finished(_: object) -> None:
            if timer.active():
                timer.cancel()
            records = DeferredList(list(self._records), consumeErrors=True)
            records.addBoth(lambda _: done.callback(None))

        DeferredList(list(self._finished.values()), consumeErrors=True).addBoth(finished)
        return done

    def _cut_all(self) -> None:
        self._cut = True
        for posting in list(self._posts.values()):
            posting.cancel()

    # -- claiming -------------------------------------------------------------------------

    def _claim(self) -> None:
        room = self._limits.backlog - len(self._in_flight)
        if room <= 0:
            self._more = True  # a finishing POST calls _fill and wakes us
            return
        self._claiming = True
        self._more = False
        limit = min(room, self._limits.claim_batch)
        claimed = self._store.claim_webhooks(
            self._clock.seconds(), limit, frozenset(self._in_flight)
        )
        claimed.addCallbacks(lambda jobs: self._claimed(jobs, limit), self._claim_failed)

    def _claimed(self, jobs: list[WebhookJob], limit: int) -> None:
        self._claiming = False
        if not self._running:
            return
        for job in jobs:
            if job.key in self._in_flight:
                continue
            self._in_flight.add(job.key)
            self._waiting.setdefault(job.url, deque()).append(job)
        if len(jobs) >= limit:
            self._more = True
        self._fill()
        if self._again or len(jobs) >= limit:
            self._again = False
            if len(self._in_flight) < self._limits.backlog:
                self._claim()
                return
        self._schedule_poll()

    def _claim_failed(self, failure: Failure) -> None:
        self._claiming = False
        _log.error("cannot read due webhooks: {error}", error=failure.getErrorMessage())
        self._schedule_poll()

    def _schedule_poll(self) -> None:
        if self._running and (self._poll is None or not self._poll.active()):
            self._poll = self._clock.callLater(_IDLE_POLL, self.wake)

    # -- POSTs ----------------------------------------------------------------------------

    def _fill(self) -> None:
        """Start POSTs for waiting jobs as the limits allow. A POST may finish
        synchronously and call back here: the nested call asks for another round."""
        if not self._running:
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
        for url, jobs in list(self._waiting.items()):
            while jobs and self._running:
                if self.posting >= self._limits.concurrency:
                    return
                if self._active.get(url, 0) >= self._limits.per_url:
                    break
                self._start(jobs.popleft())
            if not jobs:
                self._waiting.pop(url, None)

    def _start(self, job: WebhookJob) -> None:
        started = self._clock.seconds()
        try:
            body = webhook_body(job)
            headers = webhook_headers(
                self._key, webhook_id(job.message_id, job.client), started, body, job.client
            )
        except Exception as raised:  # poison (or a bug): a retry would only fail again
            self._quarantine(job, f"preparing the webhook failed ({type(raised).__name__})")
            return
        self._active[job.url] = self._active.get(job.url, 0) + 1
        timed_out = False
        try:
            posting: Deferred[Any] = self._post(job.url, headers, body)
        except Exception:
            _log.failure("cannot start the webhook POST of {msg_id}", msg_id=job.message_id)
            posting = Deferred()
            posting.callback(Unreachable("local error starting the POST"))

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            posting.cancel()

        timer = self._clock.callLater(self._timeout, expire)
        finished: Deferred[None] = Deferred()
        self._posts[job.key] = posting
        self._finished[job.key] = finished

        def posted(outcome: object) -> None:
            if timer.active():
                timer.cancel()
            self._posts.pop(job.key, None)
            self._finished.pop(job.key, None)
            self._active[job.url] -= 1
            if not self._active[job.url]:
                del self._active[job.url]
            try:
                self._posted(job, outcome, started, timed_out)
            finally:
                finished.callback(None)
                self._fill()
                if (
                    self._more
                    and self._running
                    and len(self._in_flight) < self._limits.backlog // 2
                ):
                    self.wake()

        posting.addBoth(posted)

    def _posted(self, job: WebhookJob, outcome: object, started: float, timed_out: bool) -> None:
        if self._cut:
            self._in_flight.discard(job.key)  # left untouched in the spool
            return
        attempt: Attempt
        if timed_out:
            attempt = Unreachable(f"timeout after {self._timeout:g}s")
        elif isinstance(outcome, Failure):
            _log.failure("webhook POST of {msg_id} failed", outcome, msg_id=job.message_id)
            attempt = Unreachable("local error during the POST")
        else:
            attempt = outcome  # type: ignore[assignment]
        now = self._clock.seconds()
        result = decide(job, attempt, now=now, policy=self._policy, rng=self._rng)
        self._record(job, result, started)

    def _quarantine(self, job: WebhookJob, reason: str) -> None:
        """Take ``job``'s message out of webhook delivery for good (every client's job:
        they would fail the same way); its jobs stay in flight until that is on disk."""
        jobs = [job]
        for waiting in self._waiting.values():
            same = [j for j in waiting if j.message_id == job.message_id]
            for each in same:
                waiting.remove(each)  # in place: the fill round holds this deque
            jobs.extend(same)
        now = self._clock.seconds()
        done = self._store.quarantine_inbound(job.message_id, "error", reason, now)
        self._records.add(done)

        def recorded(outcome: object) -> None:
            self._records.discard(done)
            for each in jobs:
                self._in_flight.discard(each.key)
            if outcome is True:
                log_quarantined(jobs, reason, now)
            if isinstance(outcome, Failure):
                _log.error(
                    "cannot quarantine inbound {msg_id}: {error}",
                    msg_id=job.message_id,
                    error=outcome.getErrorMessage(),
                )

        done.addBoth(recorded)

    def _record(self, job: WebhookJob, result: WebhookResult, started: float) -> None:
        seconds = self._clock.seconds() - started
        self._observer.attempt(job, result, seconds)
        log_attempt(job, result, seconds)
        recorded = self._store.record_webhook(result, dsn=self._dsn if job.bounce_allowed else None)
        self._records.add(recorded)

        def done(outcome: object) -> None:
            self._records.discard(recorded)
            self._in_flight.discard(job.key)
            if isinstance(outcome, Failure):
                _log.error(
                    "cannot record the webhook of {msg_id}: {error}",
                    msg_id=job.message_id,
                    error=outcome.getErrorMessage(),
                )
            else:
                log_final(job, result)

        recorded.addBoth(done)
