"""The delivery scheduler: claims due jobs from the queue and runs connections to deliver them.

Only a bounded window of the queue is in memory: at most ``backlog`` claimed jobs, waiting
per recipient domain, while the rest stays on disk until due. A connection ("worker") is
opened per domain while jobs wait for it, within ``concurrency`` in all and
``per_destination`` per domain; it delivers that domain's waiting jobs one transaction at a
time, up to ``messages_per_connection``, then says QUIT. Results are recorded without
waiting (the store group-commits them); a job stays "in flight", and so is never claimed
twice, until its result is on disk.

Each message is prepared (DKIM-signed) just before its transaction through ``prepare``,
which answers later (in production a :class:`rail.delivery.preparing.Preparer`: off the
reactor thread, within a budget). A message whose preparation raises or overruns that
budget is quarantined (:meth:`IDeliveryQueue.quarantine`): ``failed`` for good, with no
DSN and no retry, and the session goes on with the next job. Retrying it would only fail
again, and after a restart it would stall delivery again.

Stopping: no new claims or transactions; running transactions get ``grace`` seconds, then
their connections are cut, preparations still running are abandoned, and their jobs left
untouched in the queue (a message cut after its final dot may be delivered twice: the
safe side).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    ensureDeferred,
    maybeDeferred,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.delivery.decide import RetryPolicy, job_result, job_result_for_all, with_peer
from rail.delivery.log import NO_PEER, Peer, log_attempt, log_final, log_quarantined
from rail.delivery.outcome import MessageResult, OutboundMessage, Reply, SessionError
from rail.delivery.preparing import PrepareTimeoutError
from rail.delivery.resolve import Route, RouteError
from rail.delivery.sandbox import sandbox_result
from rail.store.deliveries import DSNBuilder
from rail.store.model import DeliveryJob, IDeliveryQueue, JobResult, QuarantineKind

__all__ = ["DeliveryLimits", "IAttemptObserver", "Scheduler", "Session"]

_log = Logger()

_IDLE_POLL = 1.0
RECORD_RETRY = 10.0
"""Seconds between tries to record a delivery result the store could not write."""
_NO_ROUTE = Reply(451, "4.4.0", "no route to any MX host", remote=False)
_INTERNAL = Reply(451, "4.3.0", "local error in processing", remote=False)


class Session(Protocol):
    """What the scheduler needs of an open SMTP client session."""

    tls_active: bool
    tls_version: str | None
    closed: bool

    def send(self, message: OutboundMessage) -> Deferred[MessageResult]: ...
    def quit(self) -> Deferred[None]: ...
    def abort(self) -> None: ...


class IAttemptObserver(Protocol):
    """Told about every recorded attempt and connection (stats, metrics, logs)."""

    def attempt(self, job: DeliveryJob, result: JobResult, seconds: float) -> None: ...
    def connection(self, domain: str, tls: bool) -> None: ...


@attrs.frozen
class DeliveryLimits:
    concurrency: int = 100
    per_destination: int = 10
    messages_per_connection: int = 100
    backlog: int = 2000
    claim_batch: int = 500


class _Quiet:
    def attempt(self, job: DeliveryJob, result: JobResult, seconds: float) -> None:
        pass

    def connection(self, domain: str, tls: bool) -> None:
        pass


class Scheduler:
    """Feeds due jobs to per-domain connections; see the module docstring.

    ``route(domain)`` fires with a :class:`Route` or fails with :class:`RouteError`;
    ``connect(address, host_name)`` fires with a :class:`Session` or fails with
    :class:`SessionError`; ``prepare(job)`` fires with the bytes to send (DKIM-signed),
    or fails: with :class:`PrepareTimeoutError` when over its budget, with
    ``CancelledError`` when cancelled at shutdown, with anything else when it raised.
    """

    def __init__(
        self,
        queue: IDeliveryQueue,
        clock: IReactorTime,
        *,
        route: Callable[[str], Deferred[Route]],
        connect: Callable[[str, str], Deferred[Session]],
        prepare: Callable[[DeliveryJob], Deferred[bytes]],
        dsn: DSNBuilder,
        policy: RetryPolicy,
        limits: DeliveryLimits,
        rng: random.Random,
        observer: IAttemptObserver | None = None,
        sandboxed: Callable[[str], bool] | None = None,
        return_path: Callable[[DeliveryJob], str] | None = None,
    ) -> None:
        """``sandboxed(client)``: whether the client's mail is signed and recorded but not
        sent (:mod:`rail.delivery.sandbox`); read at each claim."""
        self._sandboxed = sandboxed
        self._return_path = return_path  # the MAIL FROM of a job (rail.bounces.verp)
        self._queue = queue
        self._clock = clock
        self._route = route
        self._connect = connect
        self._prepare = prepare
        self._dsn = dsn
        self._policy = policy
        self._limits = limits
        self._rng = rng
        self._observer: IAttemptObserver = observer or _Quiet()
        self._waiting: dict[str, deque[DeliveryJob]] = {}
        self._in_flight: set[tuple[str, str]] = set()
        self._active: dict[str, int] = {}
        self._sessions: set[Session] = set()
        self._connecting: set[Deferred[Session]] = set()
        self._preparing: set[Deferred[bytes]] = set()
        self._workers: set[Deferred[None]] = set()
        self._records: set[Deferred[Any]] = set()
        self._unrecorded: dict[tuple[str, str], IDelayedCall] = {}
        self._claiming = False
        self._again = False
        self._filling = False
        self._refill = False
        self._poll: IDelayedCall | None = None
        self._running = False
        self._cut = False

    def reconfigure(
        self,
        policy: RetryPolicy,
        *,
        concurrency: int,
        per_destination: int,
        messages_per_connection: int,
    ) -> None:
        """New retry policy and limits (SIGHUP); running connections finish as they are."""
        self._policy = policy
        self._limits = attrs.evolve(
            self._limits,
            concurrency=concurrency,
            per_destination=per_destination,
            messages_per_connection=messages_per_connection,
        )
        self._fill()

    @property
    def in_flight(self) -> int:
        """Jobs claimed and not yet recorded."""
        return len(self._in_flight)

    @property
    def connections(self) -> int:
        return sum(self._active.values())

    def start(self) -> None:
        self._running = True
        self._queue.observe_accepted(self.wake)
        self.wake()

    def wake(self) -> None:
        """New mail may be due: claim now rather than at the next poll."""
        if not self._running:
            return
        if self._claiming:
            self._again = True
            return
        if self._poll is not None and self._poll.active():
            self._poll.cancel()
        self._poll = None
        self._claim()

    def stop(self, grace: float) -> Deferred[None]:
        """Stop claiming and starting transactions; wait up to ``grace`` seconds for the
        running ones, then cut their connections; fires once every result is recorded."""
        self._running = False
        if self._poll is not None and self._poll.active():
            self._poll.cancel()
        self._poll = None
        for jobs in self._waiting.values():
            for job in jobs:
                self._in_flight.discard(job.key)
        self._waiting.clear()
        if self._unrecorded:
            _log.warn(
                "{count} delivery results could not be recorded; those recipients are tried"
                " again after the restart",
                count=len(self._unrecorded),
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
            records = DeferredList(list(self._records), consumeErrors=True)
            records.addBoth(lambda _: done.callback(None))

        DeferredList(list(self._workers), consumeErrors=True).addBoth(finished)
        return done

    def _cut_all(self) -> None:
        self._cut = True
        for connecting in list(self._connecting):
            connecting.cancel()
        for preparing in list(self._preparing):
            preparing.cancel()
        for session in list(self._sessions):
            session.abort()

    # -- claiming -------------------------------------------------------------------------

    def _claim(self) -> None:
        room = self._limits.backlog - len(self._in_flight)
        if room <= 0:
            return  # a finishing worker calls _fill, which claims again
        self._claiming = True
        limit = min(room, self._limits.claim_batch)
        claimed = self._queue.claim(self._clock.seconds(), limit, frozenset(self._in_flight))
        claimed.addCallbacks(lambda jobs: self._claimed(jobs, limit), self._claim_failed)

    def _claimed(self, jobs: list[DeliveryJob], limit: int) -> None:
        self._claiming = False
        if not self._running:
            return
        for job in jobs:
            self._in_flight.add(job.key)
            if self._sandboxed is not None and self._sandboxed(job.client):
                self._sandbox(job)
                continue
            self._waiting.setdefault(job.domain, deque()).append(job)
        self._fill()
        if self._again or len(jobs) >= limit:
            self._again = False
            if len(self._in_flight) < self._limits.backlog:
                self._claim()
                return
        self._schedule_poll()

    def _claim_failed(self, failure: Any) -> None:
        self._claiming = False
        _log.error("cannot read due deliveries: {error}", error=failure.getErrorMessage())
        self._schedule_poll()

    def _schedule_poll(self) -> None:
        if self._running and (self._poll is None or not self._poll.active()):
            self._poll = self._clock.callLater(_IDLE_POLL, self.wake)

    # -- workers --------------------------------------------------------------------------

    def _fill(self) -> None:
        """Open connections for waiting jobs, as the limits allow, domains in turn.

        Workers may finish synchronously (and call back here): such a nested call only
        asks the running loop for another round.
        """
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
        for domain, jobs in list(self._waiting.items()):
            if self.connections >= self._limits.concurrency or not self._running:
                return
            if not jobs:
                self._waiting.pop(domain, None)
                continue
            active = self._active.get(domain, 0)
            if active >= min(self._limits.per_destination, len(jobs)):
                continue
            self._active[domain] = active + 1
            worker = ensureDeferred(self._work(domain))
            self._workers.add(worker)
            worker.addBoth(self._worker_done, worker, domain)
            self._refill = True

    def _worker_done(self, result: object, worker: Deferred[None], domain: str) -> None:
        self._workers.discard(worker)
        self._active[domain] -= 1
        if not self._active[domain]:
            del self._active[domain]
        if isinstance(result, Failure):
            _log.failure("delivery worker for {domain} failed", result, domain=domain)
        self._fill()
        if self._running and len(self._in_flight) < self._limits.backlog // 2:
            self.wake()

    def _take(self, domain: str) -> DeliveryJob | None:
        jobs = self._waiting.get(domain)
        if not self._running or not jobs:
            return None
        return jobs.popleft()

    def _release(self, job: DeliveryJob) -> None:
        """Stopping: leave ``job`` untouched in the queue (never recorded as tried)."""
        self._in_flight.discard(job.key)

    async def _work(self, domain: str) -> None:
        job = self._take(domain)
        if job is None:
            return
        try:
            route = await self._route(domain)
        except RouteError as error:
            if not self._running:
                self._release(job)
                return
            self._fail_domain(domain, job, error.reply, NO_PEER)
            return
        try:
            session, peer, last = await self._open(route)
        except CancelledError:  # cut while connecting
            self._release(job)
            return
        if not self._running:
            if session is not None:
                session.abort()
            self._release(job)
            return
        if session is None:
            self._fail_domain(domain, job, last or _NO_ROUTE, peer)
            return
        peer = attrs.evolve(peer, tls=session.tls_version if session.tls_active else "none")
        self._observer.connection(domain, session.tls_active)
        self._sessions.add(session)
        sent = 0
        try:
            while job is not None:
                if not await self._transaction(session, job, peer):
                    return
                sent += 1
                if sent >= self._limits.messages_per_connection or session.closed:
                    break  # a closed session's leftover jobs go to a new connection
                job = self._take(domain)
            if not session.closed:
                await session.quit()
        finally:
            self._sessions.discard(session)
            if not session.closed:
                session.abort()

    async def _open(self, route: Route) -> tuple[Session | None, Peer, Reply | None]:
        """A session to the first host and address that answers, with where it goes;
        or None, the last host and address tried, and the last failure."""
        last: Reply | None = None
        tried = NO_PEER
        for host in route.hosts:
            for address in host.addresses:
                if not self._running:
                    return None, tried, last
                tried = Peer(mx=host.name, address=address)
                connecting = self._connect(address, host.name)
                self._connecting.add(connecting)
                try:
                    return await connecting, tried, None
                except SessionError as error:
                    _log.info(
                        "cannot deliver through {mx} ({address}): {reply}",
                        mx=host.name,
                        address=address,
                        reply=str(error.reply),
                    )
                    last = error.reply
                finally:
                    self._connecting.discard(connecting)
        return None, tried, last

    async def _transaction(self, session: Session, job: DeliveryJob, peer: Peer) -> bool:
        """Deliver ``job``; return whether the session can carry another one."""
        host = peer.mx
        started = self._clock.seconds()
        preparing = maybeDeferred(self._prepare, job)
        self._preparing.add(preparing)
        try:
            data = await preparing
        except CancelledError:  # cut at shutdown
            self._release(job)
            return False
        except PrepareTimeoutError as overrun:
            self._quarantine(job, "timeout", str(overrun))
            return True
        except Exception as raised:  # poison (or a bug): retrying would only fail again
            self._quarantine(
                job, "error", f"preparing the message failed ({type(raised).__name__})"
            )
            return True
        finally:
            self._preparing.discard(preparing)
        message = OutboundMessage(
            sender=job.sender if self._return_path is None else self._return_path(job),
            recipients=tuple(r.address for r in job.recipients),
            data=data,
            smtputf8=job.smtputf8,
            eight_bit=job.eight_bit,
        )
        try:
            result = await session.send(message)
        except Exception as failure:
            error = (
                failure
                if isinstance(failure, SessionError)
                else SessionError(_INTERNAL)  # a bug: defer the job, drop the session
            )
            if not isinstance(failure, SessionError):
                _log.failure("delivery of {msg_id} failed", msg_id=job.message_id)
            if self._cut:
                self._in_flight.discard(job.key)  # left untouched in the queue
                return False
            self._record(
                job,
                job_result_for_all(
                    job,
                    error.reply,
                    now=self._clock.seconds(),
                    policy=self._policy,
                    rng=self._rng,
                    remote_mta=host,
                ),
                started,
                peer,
            )
            return False
        now = self._clock.seconds()
        self._record(
            job,
            job_result(job, result, now=now, policy=self._policy, rng=self._rng, remote_mta=host),
            started,
            peer,
        )
        return True

    def _sandbox(self, job: DeliveryJob) -> None:
        """Sign ``job``'s message as for sending (a failure quarantines it as usual), then
        record every recipient sent, with its sandbox event; no connection is made."""
        started = self._clock.seconds()
        preparing = maybeDeferred(self._prepare, job)
        self._preparing.add(preparing)

        def prepared(_: bytes) -> None:
            self._record(job, sandbox_result(job, self._clock.seconds()), started)

        def failed(failure: Failure) -> None:
            if failure.check(CancelledError):
                self._release(job)  # cut at shutdown: left untouched in the queue
            elif failure.check(PrepareTimeoutError):
                self._quarantine(job, "timeout", str(failure.value))
            else:
                name = failure.type.__name__ if failure.type else "error"
                self._quarantine(job, "error", f"preparing the message failed ({name})")

        def done(_: object) -> None:
            self._preparing.discard(preparing)
            self._workers.discard(work)

        # A worker of its own, so that stopping waits for it (or cuts it) like the others.
        work: Deferred[None] = preparing.addCallbacks(prepared, failed)
        self._workers.add(work)
        work.addBoth(done)

    def _fail_domain(self, domain: str, first: DeliveryJob, reply: Reply, peer: Peer) -> None:
        """Routing or every connection failed: the same answer holds for every job of the
        domain that is waiting now (``peer``: the last host and address tried, if any)."""
        jobs = [first, *self._waiting.pop(domain, ())]
        now = self._clock.seconds()
        for job in jobs:
            self._record(
                job,
                job_result_for_all(
                    job, reply, now=now, policy=self._policy, rng=self._rng, remote_mta=None
                ),
                now,
                peer,
            )

    def _quarantine(self, job: DeliveryJob, kind: QuarantineKind, reason: str) -> None:
        """Take ``job``'s message out of delivery for good; its jobs for other domains
        that wait here go with it (they would fail the same way). They stay in flight,
        so no claim hands them out again, until the quarantine is on disk."""
        jobs = [job]
        for waiting in self._waiting.values():
            same = [j for j in waiting if j.message_id == job.message_id]
            for each in same:
                waiting.remove(each)  # in place: a fill round may hold this deque
            jobs.extend(same)
        now = self._clock.seconds()
        done = self._queue.quarantine(job.message_id, kind, reason, now)
        self._records.add(done)

        def recorded(outcome: object) -> None:
            self._records.discard(done)
            for each in jobs:
                self._in_flight.discard(each.key)
            if outcome is True:
                log_quarantined(jobs, reason, now)
            if isinstance(outcome, Failure):
                _log.error(
                    "cannot quarantine {msg_id}: {error}",
                    msg_id=job.message_id,
                    error=outcome.getErrorMessage(),
                )

        done.addBoth(recorded)

    def _record(
        self, job: DeliveryJob, result: JobResult, started: float, peer: Peer = NO_PEER
    ) -> None:
        seconds = self._clock.seconds() - started
        self._observer.attempt(job, result, seconds)
        log_attempt(job, result, peer, seconds)
        self._store_result(job, with_peer(result, peer))

    def _store_result(self, job: DeliveryJob, result: JobResult) -> None:
        """Record ``result``; if the store cannot (a full disk), keep the job in flight
        and try again every ``RECORD_RETRY`` seconds: claiming it again would repeat an
        attempt whose outcome is known, only not yet written."""
        recorded = self._queue.record(result, self._dsn)
        self._records.add(recorded)

        def done(outcome: object) -> None:
            self._records.discard(recorded)
            if isinstance(outcome, Failure):
                _log.error(
                    "cannot record delivery of {msg_id}: {error}; trying again in {delay}s",
                    msg_id=job.message_id,
                    error=outcome.getErrorMessage(),
                    delay=RECORD_RETRY,
                )
                if self._running:
                    self._unrecorded[job.key] = self._clock.callLater(
                        RECORD_RETRY, self._retry_record, job, result
                    )
                    return
            else:
                log_final(job, result)
            self._in_flight.discard(job.key)

        recorded.addBoth(done)

    def _retry_record(self, job: DeliveryJob, result: JobResult) -> None:
        del self._unrecorded[job.key]
        self._store_result(job, result)
