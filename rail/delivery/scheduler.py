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

The claiming, limits, recording and stopping are :class:`rail.jobs.runner.Runner`'s; this
module is the delivery kind on top of it (groups are recipient domains). A sandboxed
client's jobs wait in a group of their own, whose workers sign each message and record its
recipients sent with the sandbox reply, without a route or a connection.

Stopping: no new claims or transactions; running transactions get ``grace`` seconds, then
their connections are cut, preparations still running are abandoned, and their jobs left
untouched in the queue (a message cut after its final dot may be delivered twice: the
safe side).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

import attrs
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rail.delivery.decide import RetryPolicy, job_result, job_result_for_all, with_peer
from rail.delivery.log import NO_PEER, Peer, log_attempt, log_final, log_quarantined
from rail.delivery.outcome import MessageResult, OutboundMessage, Reply, SessionError
from rail.delivery.preparing import PrepareTimeoutError
from rail.delivery.resolve import Route, RouteError
from rail.delivery.sandbox import sandbox_result
from rail.delivery.tlspolicy import TLSRequirement
from rail.jobs.runner import RECORD_RETRY, Runner, RunnerLimits
from rail.store.deliveries import DSNBuilder
from rail.store.model import (
    DeliveryJob,
    IDeliveryQueue,
    JobResult,
    NewMessage,
    QuarantineKind,
    QueueLeases,
)

__all__ = ["RECORD_RETRY", "DeliveryLimits", "IAttemptObserver", "Scheduler", "Session"]

_log = Logger()

_NO_ROUTE = Reply(451, "4.4.0", "no route to any MX host", remote=False)
_INTERNAL = Reply(451, "4.3.0", "local error in processing", remote=False)
_SANDBOX = "(sandbox)"
"""The group of sandboxed clients' jobs: not a domain name, so never a real domain's."""


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


def _runner_limits(limits: DeliveryLimits) -> RunnerLimits:
    return RunnerLimits(
        concurrency=limits.concurrency, backlog=limits.backlog, claim_batch=limits.claim_batch
    )


class Scheduler:
    """Feeds due jobs to per-domain connections; see the module docstring.

    ``route(domain)`` fires with a :class:`Route` or fails with :class:`RouteError`;
    ``connect(address, host_name, tls)`` (``tls``: the host's requirement, from the
    route) fires with a :class:`Session` or fails with :class:`SessionError`;
    ``prepare(job)`` fires with the bytes to send (DKIM-signed), or fails: with
    :class:`PrepareTimeoutError` when over its budget, with ``CancelledError`` when
    cancelled at shutdown, with anything else when it raised.
    """

    what = "deliveries"

    def __init__(
        self,
        queue: IDeliveryQueue,
        clock: IReactorTime,
        *,
        route: Callable[[str], Deferred[Route]],
        connect: Callable[[str, str, TLSRequirement], Deferred[Session]],
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
        self._runner: Runner[DeliveryJob] = Runner(
            self, clock, _runner_limits(limits), QueueLeases.of(queue, "outbound")
        )
        self._sessions: set[Session] = set()
        self._connecting: set[Deferred[Session]] = set()
        self._preparing: set[Deferred[bytes]] = set()

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
        self._runner.reconfigure(_runner_limits(self._limits))

    @property
    def in_flight(self) -> int:
        """Jobs claimed and not yet recorded."""
        return self._runner.in_flight

    @property
    def connections(self) -> int:
        return self._runner.busy

    def start(self) -> None:
        self._queue.observe_accepted(self.wake)
        self._runner.start()

    def wake(self) -> None:
        """New mail may be due: claim now rather than at the next poll."""
        self._runner.wake()

    def stop(self, grace: float) -> Deferred[None]:
        """Stop claiming and starting transactions; wait up to ``grace`` seconds for the
        running ones, then cut their connections; fires once every result is recorded."""
        return self._runner.stop(grace)

    # -- the delivery kind (rail.jobs.runner.JobKind) -------------------------------------

    def claim(
        self, now: float, limit: int, exclude: frozenset[tuple[str, str]]
    ) -> Deferred[list[DeliveryJob]]:
        return self._queue.claim(now, limit, exclude)

    def group(self, job: DeliveryJob) -> str:
        """The recipient domain; a sandboxed client's jobs wait in a group of their own
        (whether the client is sandboxed is read as its jobs are claimed)."""
        if self._sandboxed is not None and self._sandboxed(job.client):
            return _SANDBOX
        return job.domain

    def may_start(self, active: int, waiting: int) -> bool:
        """A connection per waiting job, up to ``per_destination``: a running connection
        takes the domain's next job when its transaction ends."""
        return active < min(self._limits.per_destination, waiting)

    def work(self, group: str) -> Deferred[None]:
        if group == _SANDBOX:
            return ensureDeferred(self._sandbox_work())
        return ensureDeferred(self._work(group))

    def cut(self) -> None:
        for connecting in list(self._connecting):
            connecting.cancel()
        for preparing in list(self._preparing):
            preparing.cancel()
        for session in list(self._sessions):
            session.abort()

    def describe(self, job: DeliveryJob) -> str:
        return f"delivery of {job.message_id}"

    # -- connections ----------------------------------------------------------------------

    async def _work(self, domain: str) -> None:
        runner = self._runner
        job = runner.take(domain)
        if job is None:
            return
        try:
            route = await self._route(domain)
        except RouteError as error:
            if not runner.running:
                runner.release(job)
                return
            self._fail_domain(domain, job, error.reply, NO_PEER)
            return
        try:
            session, peer, last = await self._open(route)
        except CancelledError:  # cut while connecting
            runner.release(job)
            return
        if not runner.running:
            if session is not None:
                session.abort()
            runner.release(job)
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
                job = runner.take(domain)
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
                if not self._runner.running:
                    return None, tried, last
                tried = Peer(mx=host.name, address=address)
                connecting = self._connect(address, host.name, host.tls)
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
            self._runner.release(job)
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
            if self._runner.cut:
                self._runner.release(job)  # left untouched in the queue
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

    async def _sandbox_work(self) -> None:
        """Sign sandboxed jobs' messages as for sending (a failure quarantines as usual),
        then record every recipient sent, with its sandbox event; no route nor connection
        is asked for."""
        runner = self._runner
        while (job := runner.take(_SANDBOX)) is not None:
            started = self._clock.seconds()
            preparing = maybeDeferred(self._prepare, job)
            self._preparing.add(preparing)
            try:
                await preparing
            except CancelledError:  # cut at shutdown: left untouched in the queue
                runner.release(job)
                return
            except PrepareTimeoutError as overrun:
                self._quarantine(job, "timeout", str(overrun))
                continue
            except Exception as raised:  # poison (or a bug): retrying would only fail again
                name = type(raised).__name__
                self._quarantine(job, "error", f"preparing the message failed ({name})")
                continue
            finally:
                self._preparing.discard(preparing)
            self._record(job, sandbox_result(job, self._clock.seconds()), started)

    def _fail_domain(self, domain: str, first: DeliveryJob, reply: Reply, peer: Peer) -> None:
        """Routing or every connection failed: the same answer holds for every job of the
        domain that is waiting now (``peer``: the last host and address tried, if any)."""
        jobs = [first, *self._runner.take_all(domain)]
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
        that wait here go with it (they would fail the same way)."""
        message_id = job.message_id
        jobs = [job, *self._runner.withdraw(lambda j: j.message_id == message_id)]
        now = self._clock.seconds()
        self._runner.quarantine(
            jobs,
            self._queue.quarantine(message_id, kind, reason, now),
            lambda done: log_quarantined(done, reason, now),
        )

    def _record(
        self, job: DeliveryJob, result: JobResult, started: float, peer: Peer = NO_PEER
    ) -> None:
        seconds = self._clock.seconds() - started
        self._observer.attempt(job, result, seconds)
        log_attempt(job, result, peer, seconds)
        self._runner.record(job, with_peer(result, peer))

    def write(self, job: DeliveryJob, result: JobResult) -> Deferred[NewMessage | None]:
        return self._queue.record(result, self._dsn)

    def recorded(self, job: DeliveryJob, result: JobResult, answer: object) -> None:
        log_final(job, result)
