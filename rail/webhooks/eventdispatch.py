"""The event dispatcher: claims due event jobs and POSTs them to the applications.

The third kind of :class:`rail.jobs.runner.Runner` job, delivered like inbound-mail
webhooks (:mod:`rail.webhooks.dispatcher`): signed the same way (Standard Webhooks ``v1``
with the client's secret and ``v1a`` with Rail's key; ``webhook-id`` is the event's id,
the same for every attempt), POSTed with the same SSRF-safe client, the same timeout,
retry schedule, ``max_age`` (counted from the moment the event happened) and per-URL
concurrency (``webhooks.*``). Jobs are grouped per client (one events URL each).

The URL is looked up when the POST starts: the client's subscription's ``url`` when set,
else the webhook URL of its certificate (``webhook_url(client)``). A client with neither
fails the event at once (``last_reply`` says so, one ``event.final`` line). A job whose
payload cannot be built or signed is quarantined: ``failed`` for good, never retried.
The store wakes the dispatcher when a write queued events, so they start at once; due
retries are found by the runner's poll.

Stopping: as the other kinds; a POST cut at the end of the grace period leaves its event
untouched, so it is POSTed again after the restart with the same ``webhook-id``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from rail.events.jobs import EventJob, EventResult
from rail.events.payload import event_body
from rail.webhooks.eventlog import log_attempt, log_final, log_quarantined
from rail.webhooks.key import WebhookKey
from rail.webhooks.outcome import Attempt, WebhookPolicy, judge
from rail.webhooks.posting import Post, PostingKind, WebhookLimits
from rail.webhooks.signing import webhook_headers

__all__ = ["EventDispatcher", "IEventObserver"]


class IEventObserver(Protocol):
    """Told about every decided POST (stats, metrics)."""

    def attempt(self, job: EventJob, result: EventResult, seconds: float) -> None: ...


class _Quiet:
    def attempt(self, job: EventJob, result: EventResult, seconds: float) -> None:
        pass


class EventDispatcher(PostingKind[EventJob]):
    """Feeds due events to POSTs; see the module docstring. ``store`` is an
    :class:`rail.events.jobs.IEventStore`."""

    what = "events"

    def __init__(
        self,
        store: Any,
        clock: IReactorTime,
        *,
        post: Post,
        key: WebhookKey,
        policy: WebhookPolicy,
        limits: WebhookLimits,
        timeout: float,
        rng: random.Random,
        webhook_url: Callable[[str], str | None],
        observer: IEventObserver | None = None,
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
            what="event",
            queue="events",
        )
        self._webhook_url = webhook_url
        self._observer: IEventObserver = observer or _Quiet()

    def start(self) -> None:
        self._store.observe_events(self.wake)
        self._runner.start()

    def url(self, client: str) -> str | None:
        """Where ``client``'s events go now, or None."""
        subscription = self._store.subscriptions.by_client.get(client)
        if subscription is not None and subscription.url is not None:
            return str(subscription.url)
        return self._webhook_url(client)

    # -- the event kind (rail.jobs.runner.JobKind) ----------------------------------------

    def claim(self, now: float, limit: int, exclude: frozenset[str]) -> Deferred[list[EventJob]]:
        return self._store.claim_events(now, limit, exclude)

    def group(self, job: EventJob) -> str:
        return job.client

    def describe(self, job: EventJob) -> str:
        return f"event {job.id}"

    def work(self, group: str) -> Deferred[None]:
        """One POST of the next event waiting for client ``group``."""
        job = self._runner.take(group)
        if job is None:
            return succeed(None)
        started = self._clock.seconds()
        url = self.url(job.client)
        if url is None:
            reply = (
                f"no URL for events: client {job.client} has no events URL and its"
                " certificate no webhook"
            )
            result = EventResult(job.id, started, "failed", reply)
            self._observer.attempt(job, result, 0.0)
            self._runner.record(job, result)
            return succeed(None)
        try:
            body = event_body(job)
            headers = webhook_headers(self._key, job.id, started, body, job.client)
        except Exception as raised:  # poison (or a bug): a retry would only fail again
            self._quarantine(job, f"preparing the event failed ({type(raised).__name__})")
            return succeed(None)
        posted = self._posts.post(url, headers, body, job.id)
        return posted.addCallback(self._posted, job, url, started)

    def _posted(self, attempt: Attempt | None, job: EventJob, url: str, started: float) -> None:
        if attempt is None:
            self._runner.release(job)  # cut: left untouched in the store
            return
        now = self._clock.seconds()
        status, reply, when = judge(
            attempt,
            since=job.created_at,
            attempts=job.attempts,
            now=now,
            policy=self._policy,
            rng=self._rng,
        )
        result = EventResult(job.id, now, status, reply, when)
        seconds = now - started
        self._observer.attempt(job, result, seconds)
        log_attempt(job, url, result, seconds)
        self._runner.record(job, result)

    def write(self, job: EventJob, result: EventResult) -> Deferred[Any]:
        return self._store.record_event(result)

    def recorded(self, job: EventJob, result: EventResult, answer: object) -> None:
        log_final(job, self.url(job.client), result, job.attempts + 1)

    def _quarantine(self, job: EventJob, reason: str) -> None:
        now = self._clock.seconds()
        self._runner.quarantine(
            [job],
            self._store.quarantine_event(job.id, "error", reason, now),
            lambda done: log_quarantined(done, reason, now),
        )
