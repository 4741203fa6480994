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

The claiming, limits, recording and stopping are :class:`rail.jobs.runner.Runner`'s; this
module is the webhook kind on top of it (groups are webhook URLs).

Stopping: no new claims or POSTs; running POSTs get ``grace`` seconds, then they are
cancelled and their jobs left untouched in the spool: after a restart they are POSTed
again, so an application may see the same webhook twice and must dedupe by
``webhook-id`` (the same for every attempt of a job).
"""

from __future__ import annotations

import random
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rail.inbound.model import WebhookJob, WebhookResult
from rail.store.deliveries import DSNBuilder
from rail.webhooks.key import WebhookKey
from rail.webhooks.log import log_attempt, log_final, log_quarantined
from rail.webhooks.outcome import Attempt, WebhookPolicy, decide
from rail.webhooks.payload import webhook_body
from rail.webhooks.posting import Post, PostingKind, WebhookLimits
from rail.webhooks.signing import webhook_headers, webhook_id

__all__ = ["Dispatcher", "IWebhookObserver", "Post", "WebhookLimits"]

_log = Logger()


class IWebhookObserver(Protocol):
    """Told about every recorded attempt (stats, metrics)."""

    def attempt(self, job: WebhookJob, result: WebhookResult, seconds: float) -> None: ...


class _Quiet:
    def attempt(self, job: WebhookJob, result: WebhookResult, seconds: float) -> None:
        pass


class Dispatcher(PostingKind[WebhookJob]):
    """Feeds due webhook jobs to POSTs; see the module docstring. ``store`` is an
    :class:`rail.inbound.model.IInboundStore`."""

    what = "webhooks"

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
        super().__init__(
            store,
            clock,
            post=post,
            key=key,
            policy=policy,
            limits=limits,
            timeout=timeout,
            rng=rng,
            what="webhook",
            queue="inbound",
        )
        self._dsn = dsn
        self._observer: IWebhookObserver = observer or _Quiet()

    def start(self) -> None:
        self._store.observe_inbound(self.offer)
        self._runner.start()

    def offer(self, jobs: list[WebhookJob]) -> None:
        """Jobs of mail just spooled, handed over by the store: they start without a
        claim reading them back. Beyond the backlog they stay for a later claim."""
        self._runner.offer(jobs)

    # -- the webhook kind (rail.jobs.runner.JobKind) --------------------------------------

    def claim(
        self, now: float, limit: int, exclude: frozenset[tuple[str, str]]
    ) -> Deferred[list[WebhookJob]]:
        return self._store.claim_webhooks(now, limit, exclude)

    def group(self, job: WebhookJob) -> str:
        return job.url

    def describe(self, job: WebhookJob) -> str:
        return f"the webhook of {job.message_id}"

    def work(self, group: str) -> Deferred[None]:
        """One POST of the next job waiting for ``group``'s URL."""
        job = self._runner.take(group)
        if job is None:
            return succeed(None)
        started = self._clock.seconds()
        try:
            body = webhook_body(job)
            headers = webhook_headers(
                self._key, webhook_id(job.message_id, job.client), started, body, job.client
            )
        except Exception as raised:  # poison (or a bug): a retry would only fail again
            self._quarantine(job, f"preparing the webhook failed ({type(raised).__name__})")
            return succeed(None)
        posted = self._posts.post(job.url, headers, body, job.message_id)
        return posted.addCallback(self._posted, job, started)

    def _posted(self, attempt: Attempt | None, job: WebhookJob, started: float) -> None:
        if attempt is None:
            self._runner.release(job)  # cut: left untouched in the spool
            return
        now = self._clock.seconds()
        result = decide(job, attempt, now=now, policy=self._policy, rng=self._rng)
        seconds = now - started
        self._observer.attempt(job, result, seconds)
        log_attempt(job, result, seconds)
        self._runner.record(job, result)

    def write(self, job: WebhookJob, result: WebhookResult) -> Deferred[Any]:
        dsn = self._dsn if job.bounce_allowed else None
        return self._store.record_webhook(result, dsn=dsn)

    def recorded(self, job: WebhookJob, result: WebhookResult, answer: object) -> None:
        log_final(job, result)

    def _quarantine(self, job: WebhookJob, reason: str) -> None:
        """Take ``job``'s message out of webhook delivery for good (every client's job:
        they would fail the same way)."""
        message_id = job.message_id
        jobs = [job, *self._runner.withdraw(lambda j: j.message_id == message_id)]
        now = self._clock.seconds()
        self._runner.quarantine(
            jobs,
            self._store.quarantine_inbound(message_id, "error", reason, now),
            lambda done: log_quarantined(done, reason, now),
        )
