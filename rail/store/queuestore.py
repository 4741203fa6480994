"""The durable queue: :class:`IQueueStore` and its siblings on either database engine.

The reactor side only enqueues operations and hands out Deferreds; all database work
happens on the single writer thread of :mod:`rail.store.writer`, which group-commits
acceptances and fires the Deferreds back on the reactor with ``callFromThread``, and on the
read thread of :mod:`rail.store.reader` (status look-ups, counts), so reads never delay a
commit. What is the engine's own (opening it, free space, the pending count) is its
:class:`~rail.store.backend.Backend`: :class:`rail.store.sqlite.SQLiteStore` (embedded,
the default) and :class:`rail.store.postgres.PostgresStore` build this class with theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from rail.bounces.reports import DeliveryReport, FeedbackReport
from rail.events.jobs import EventJob, EventResult, IEventStore
from rail.events.subscriptions import Subscriptions
from rail.inbound.model import (
    IInboundStore,
    InboundMessage,
    InboundStatus,
    WebhookJob,
    WebhookResult,
    new_jobs,
)
from rail.store.adminmodel import IAdminQueue
from rail.store.adminqueue import SQLiteAdmin
from rail.store.backend import Backend
from rail.store.bouncereports import Noted, record_report
from rail.store.db import DATABASE_ERRORS, Connection
from rail.store.deliveries import (
    DSNBuilder,
    oldest_pending_received_at,
    recipient_counts,
)
from rail.store.events import event_counts, inserted
from rail.store.ids import id_time
from rail.store.inbound import inbound_status, webhook_counts
from rail.store.lease import LEASE_SECONDS, node_id
from rail.store.model import (
    Accepted,
    Conflict,
    DeliveryJob,
    IBatchAccept,
    IDeliveryQueue,
    IdempotencyKey,
    ILeases,
    IQueueStore,
    IRetention,
    JobQueue,
    JobResult,
    MessageStatus,
    NewMessage,
    Purged,
    Quarantined,
    QuarantineKind,
    Replayed,
    Stale,
    StoreUnavailableError,
)
from rail.store.ops import (
    AcceptManyOp,
    AcceptOp,
    AdminOp,
    Claimed,
    ClaimOp,
    EventClaimOp,
    EventRecordOp,
    InboundAcceptOp,
    LeaseOp,
    Outcome,
    PurgeOp,
    QuarantineOp,
    ReadOp,
    RecordOp,
    WebhookClaimOp,
    WebhookRecordOp,
)
from rail.store.reader import Read, Reader
from rail.store.sharedusage import others_usage, others_usage_by_minute
from rail.store.status import read_status
from rail.store.suppressionmodel import ISuppressionList
from rail.store.suppressionqueue import SQLiteSuppressions
from rail.store.tlsreports import SQLiteTLSReports
from rail.store.usage import client_usage
from rail.store.writer import Writer

__all__ = ["COUNTS_MAX_AGE", "VACUUM_PAGES", "QueueStore"]

_log = Logger()

COUNTS_MAX_AGE = 1.0
"""Seconds a count read for ``/stats`` or ``/metrics`` is answered again from memory."""
VACUUM_PAGES = 256
"""Free pages one purge step gives back to the file system (1 MiB of 4 KiB pages)."""


@implementer(
    IQueueStore,
    IBatchAccept,
    IDeliveryQueue,
    IInboundStore,
    IRetention,
    IAdminQueue,
    ISuppressionList,
    IEventStore,
    ILeases,
)
class QueueStore(SQLiteAdmin, SQLiteSuppressions, SQLiteTLSReports):
    """The queue in the database of ``backend``; build it with a subclass's ``open``."""

    def __init__(
        self,
        reactor: IReactorFromThreads,
        backend: Backend,
        *,
        max_queued: int,
        min_free_bytes: int,
        lease: float = LEASE_SECONDS,
        node: str | None = None,
        leases: bool | None = None,
    ) -> None:
        """``lease``, ``node`` and ``leases``: see :class:`rail.store.writer.Writer`
        (claims take leases where the engine shares its database, or when ``node`` is
        given, as tests do)."""
        self._reactor = reactor
        self._backend = backend
        # The node id given (tests), else this process's (node_id(), as of start).
        self._node = node
        self._started = False
        self._closing = False
        self._close_waiters: list[Deferred[None]] | None = None
        self._observers: list[Callable[[], object]] = []
        self._inbound_observers: list[Callable[[list[WebhookJob]], object]] = []
        self._quarantine_observers: list[Callable[[Quarantined], object]] = []
        self._stale_observers: list[Callable[[Stale], object]] = []
        self._inbound_accepts: dict[int, InboundMessage] = {}
        self._event_observers: list[Callable[[], object]] = []
        self._events_seen = inserted()
        self._reader = Reader(
            self._deliver_reads_from_thread, lost=backend.lost, reconnect=self._reconnect_reader
        )
        self._reading = False
        # Counts shared by concurrent callers and reused for COUNTS_MAX_AGE seconds.
        self._seconds = reactor.seconds if IReactorTime.providedBy(reactor) else None
        self._counts: dict[str, tuple[int, float, dict[str, int]]] = {}
        self._counting: dict[tuple[str, int], list[Deferred[dict[str, int]]]] = {}
        self._writes_answered = 0
        self._purged_before = float("-inf")
        self._writer = Writer(
            backend,
            max_queued=max_queued,
            min_free_bytes=min_free_bytes,
            deliver=self._deliver_from_thread,
            stopped=self._stopped_from_thread,
            lease=lease,
            node=node,
            leases=leases,
        )

    def start(self) -> None:
        """Connect again and start the writer and read threads (from ``startService``).

        Raises :class:`StoreUnavailableError` if the database became unusable since
        ``open``. Accepts submitted earlier are answered once it runs.
        """
        if self._started or self._closing:
            return
        connection = self._backend.connect()
        try:
            self._writer.start(connection)
        except DATABASE_ERRORS as error:
            connection.close()
            raise StoreUnavailableError(
                f"{self._backend.describe()}: unusable queue database: {error}"
            ) from error
        self._started = True
        reader = self._backend.connect_reader()
        if reader is not None:
            self._reader.start(reader)
            self._reading = True

    def _reconnect_reader(self) -> Connection:
        """A new read connection after the read thread lost its own (PostgreSQL)."""
        reader = self._backend.connect_reader()
        if reader is None:
            raise StoreUnavailableError(f"{self._backend.describe()}: cannot read queue")
        return reader

    @property
    def commits(self) -> int:
        """Transactions committed so far: fewer than acceptances when group commit works."""
        return self._writer.commits

    @property
    def queued(self) -> int:
        """Messages with a recipient still to deliver, as counted against ``max_queued``."""
        return self._writer.pending

    def accept(
        self, message: NewMessage, idempotency: IdempotencyKey | None = None
    ) -> Deferred[Accepted | Replayed | Conflict]:
        """Fires once ``message`` is durable (or was already, for a replay); see
        :class:`IQueueStore`."""
        if self._closing:
            return fail(StoreUnavailableError("queue store closed"))
        result: Deferred[Accepted | Replayed | Conflict] = Deferred()
        self._writer.submit(AcceptOp(message, idempotency, result))
        return result

    def accept_many(
        self, items: Sequence[tuple[NewMessage, IdempotencyKey | None]]
    ) -> Deferred[list[object]]:
        """Accept ``items`` in one transaction (one durable COMMIT); see :class:`IBatchAccept`."""
        if self._closing:
            return fail(StoreUnavailableError("queue store closed"))
        done = self._submit(lambda token: AcceptManyOp(tuple(items), token))
        return done.addCallback(
            lambda results: self._woken(
                results, any(isinstance(result, Accepted) for result in results)
            )
        )

    def status(self, client: str, message_id: str) -> Deferred[MessageStatus | None]:
        """The status of ``message_id`` if ``client`` owns it, else None."""
        return self._read(lambda connection: read_status(connection, client, message_id))

    def expired(self, message_id: str) -> bool:
        """Whether ``message_id`` is older than the records retention purged; see
        :class:`IRetention`."""
        made = id_time(message_id)
        return made is not None and made < self._purged_before

    def purge(
        self, now: float, body_before: float, record_before: float, limit: int
    ) -> Deferred[Purged]:
        """One retention step on the writer, after the operations waiting with it are
        answered; see :class:`IRetention`."""

        def done(purged: Purged) -> Purged:
            self._purged_before = max(self._purged_before, record_before)
            return purged

        step = self._submit(
            lambda token: PurgeOp(now, body_before, record_before, limit, VACUUM_PAGES, token)
        )
        return step.addCallback(done)

    def oldest_pending_received_at(self) -> Deferred[float | None]:
        """When the oldest pending message was received, or None; an indexed read on the
        read thread (see :func:`rail.store.deliveries.oldest_pending_received_at`)."""
        return self._read(oldest_pending_received_at)

    def client_usage(
        self, since: float, until: float
    ) -> Deferred[list[tuple[str, float, int, int]]]:
        """Messages and recipients per client and minute from ``since`` to ``until``, on
        the read thread (see :func:`rail.store.usage.client_usage`): the rate limits' seed."""
        return self._read(lambda connection: client_usage(connection, since, until))

    @property
    def node(self) -> str:
        """This process's id in the shared usage rows: the one given (tests run two nodes
        in one process), else :func:`rail.store.lease.node_id` as of :meth:`start`
        (twistd may fork between building the store and starting it)."""
        if self._node is not None:
            return self._node
        return self._writer.usage_node or node_id()

    @property
    def shared(self) -> bool:
        """Whether other processes accept mail into the same database (PostgreSQL)."""
        return self._backend.shared

    def others_usage(self, since: float) -> Deferred[list[tuple[str, float, str, int, int]]]:
        """The other nodes' usage rows from the bucket of ``since`` on, read on the read
        thread (see :func:`rail.store.sharedusage.others_usage`); shared databases only."""
        return self._read(lambda connection: others_usage(connection, self.node, since))

    def usage_seed(
        self, since: float, recent: float
    ) -> Deferred[tuple[list[tuple[str, float, int, int]], list[tuple[str, float, str, int, int]]]]:
        """The other nodes' usage from ``since``: per client and minute before ``recent``,
        and row by row from ``recent`` on, in one read on the read thread; shared
        databases only (start-up: :class:`rail.store.usagepoll.UsagePoller`)."""

        def read(
            connection: Connection,
        ) -> tuple[list[tuple[str, float, int, int]], list[tuple[str, float, str, int, int]]]:
            old = others_usage_by_minute(connection, self.node, since, recent)
            return old, others_usage(connection, self.node, recent)

        return self._read(read)

    def claim(
        self, now: float, limit: int, exclude: frozenset[tuple[str, str]]
    ) -> Deferred[list[DeliveryJob]]:
        """Due jobs; see :class:`IDeliveryQueue`."""
        claimed = self._submit(lambda token: ClaimOp(now, limit, exclude, token))
        return claimed.addCallback(self._jobs)

    def record(
        self, result: JobResult, dsn: DSNBuilder | None = None
    ) -> Deferred[NewMessage | None]:
        """Record a delivery attempt; see :class:`IDeliveryQueue`."""
        return self._submit(lambda token: RecordOp(result, dsn, token))

    def recipient_counts(self) -> Deferred[dict[str, int]]:
        """Recipients by status, from the read thread, at most COUNTS_MAX_AGE old."""
        return self._count("outbound", recipient_counts)

    def quarantine(
        self, message_id: str, kind: QuarantineKind, reason: str, now: float
    ) -> Deferred[bool]:
        """Take outbound ``message_id`` out of delivery for good; see IDeliveryQueue."""
        return self._quarantine("outbound", message_id, kind, reason, now)

    def quarantine_inbound(
        self, message_id: str, kind: QuarantineKind, reason: str, now: float
    ) -> Deferred[bool]:
        """Take inbound ``message_id``'s webhook jobs out for good; see IInboundStore."""
        return self._quarantine("inbound", message_id, kind, reason, now)

    def observe_quarantined(self, callback: Callable[[Quarantined], object]) -> None:
        """Call ``callback(Quarantined)`` once per quarantined message; see IDeliveryQueue."""
        self._quarantine_observers.append(callback)

    def _quarantine(
        self,
        queue: Literal["outbound", "inbound", "events"],
        message_id: str,
        kind: QuarantineKind,
        reason: str,
        now: float,
    ) -> Deferred[bool]:
        done = self._submit(lambda token: QuarantineOp(queue, message_id, kind, reason, now, token))

        def reported(result: Quarantined | Stale | None) -> bool:
            if isinstance(result, Quarantined):
                self._report([result])
            return isinstance(result, Quarantined)

        return done.addCallback(reported)

    def _jobs(self, claimed: Claimed) -> list[Any]:
        self._report(claimed.quarantined)
        return claimed.jobs

    def _report(self, quarantined: list[Quarantined]) -> None:
        for record in quarantined:
            for observer in self._quarantine_observers:
                observer(record)

    @property
    def lease(self) -> float | None:
        """Seconds a claim holds its jobs, or None: this database belongs to one process,
        whose claims take no leases (see ILeases; known once started)."""
        return self._writer.lease if self._writer.node is not None else None

    def renew_leases(self, queue: JobQueue, keys: Sequence[Any], now: float) -> Deferred[None]:
        """Extend this node's leases on the jobs of ``queue`` keyed ``keys``; see ILeases."""
        if self.lease is None or not keys:
            return succeed(None)
        ids = tuple(key if queue == "events" else key[0] for key in keys)
        return self._submit(lambda token: LeaseOp("renew", queue, ids, now, token))

    def release_leases(self, queue: JobQueue, jobs: Sequence[Any]) -> Deferred[None]:
        """Give up this node's leases on ``jobs`` of ``queue``; see ILeases."""
        if self.lease is None or not jobs:
            return succeed(None)
        rows: tuple[Any, ...]
        if queue == "outbound":
            rows = tuple((job.message_id, r.idx) for job in jobs for r in job.recipients)
        elif queue == "inbound":
            rows = tuple((job.message_id, job.client) for job in jobs)
        else:
            rows = tuple((job.id,) for job in jobs)
        return self._submit(lambda token: LeaseOp("release", queue, rows, 0.0, token))

    def observe_stale(self, callback: Callable[[Stale], object]) -> None:
        """Call ``callback(Stale)`` once per result not written because another node holds
        its job now; see ILeases."""
        self._stale_observers.append(callback)

    def observe_accepted(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever new mail is queued; see :class:`IDeliveryQueue`."""
        self._observers.append(callback)

    def accept_inbound(self, message: InboundMessage) -> Deferred[Accepted]:
        """Fires once ``message`` and its webhook jobs are durable; see IInboundStore."""
        if self._closing:
            return fail(StoreUnavailableError("queue store closed"))
        result: Deferred[Accepted] = Deferred()
        self._inbound_accepts[id(result)] = message
        self._writer.submit(InboundAcceptOp(message, result))
        return result

    def claim_webhooks(
        self, now: float, limit: int, exclude: frozenset[tuple[str, str]]
    ) -> Deferred[list[WebhookJob]]:
        """Due webhook jobs; see IInboundStore."""
        claimed = self._submit(lambda token: WebhookClaimOp(now, limit, exclude, token))
        return claimed.addCallback(self._jobs)

    def record_webhook(
        self, result: WebhookResult, dsn: DSNBuilder | None = None
    ) -> Deferred[NewMessage | None]:
        """Record a webhook POST; see IInboundStore."""
        return self._submit(lambda token: WebhookRecordOp(result, dsn, token))

    def inbound_status(self, client: str, message_id: str) -> Deferred[InboundStatus | None]:
        """``client``'s view of inbound ``message_id``, or None."""
        return self._read(lambda connection: inbound_status(connection, client, message_id))

    def webhook_counts(self) -> Deferred[dict[str, int]]:
        """Webhook jobs by status, from the read thread, at most COUNTS_MAX_AGE old."""
        return self._count("inbound", webhook_counts)

    @property
    def subscriptions(self) -> Subscriptions:
        """Who subscribed to which events (read by the writer thread as it stores them)."""
        return self._writer.subscriptions

    @subscriptions.setter
    def subscriptions(self, value: Subscriptions) -> None:
        self._writer.subscriptions = value  # a reference swap: safe across threads

    def use_sandboxed(self, sandboxed: Callable[[str], bool]) -> None:
        """``sandboxed(client)``: whether the client's mail is recorded but never
        delivered, so that its ``message.accepted`` says ``sandbox`` (called on the
        writer thread: it must only read)."""
        self._writer.sandboxed = sandboxed

    def claim_events(
        self, now: float, limit: int, exclude: frozenset[str]
    ) -> Deferred[list[EventJob]]:
        """Due event jobs; see IEventStore."""
        claimed = self._submit(lambda token: EventClaimOp(now, limit, exclude, token))
        return claimed.addCallback(self._jobs)

    def record_event(self, result: EventResult) -> Deferred[bool]:
        """Record an event POST; see IEventStore."""
        return self._submit(lambda token: EventRecordOp(result, token))

    def quarantine_event(
        self, event_id: str, kind: QuarantineKind, reason: str, now: float
    ) -> Deferred[bool]:
        """Take event ``event_id`` out for good; see IEventStore."""
        return self._quarantine("events", event_id, kind, reason, now)

    def event_counts(self) -> Deferred[dict[str, int]]:
        """Event jobs by status, from the read thread, at most COUNTS_MAX_AGE old."""
        return self._count("events", event_counts)

    def observe_events(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever new events were stored; see IEventStore."""
        self._event_observers.append(callback)

    def _count(self, key: str, read: Read) -> Deferred[dict[str, int]]:
        """``read``'s counts, shared and briefly reused: callers that ask while a read is in
        flight share its answer, and an answer is reused for COUNTS_MAX_AGE seconds. Either
        only while no write was answered since the read began, so a caller never sees
        counts older than a write it has seen answered."""
        now = self._seconds() if self._seconds is not None else None
        generation = self._writes_answered
        cached = self._counts.get(key)
        if (
            cached is not None
            and now is not None
            and cached[0] == generation
            and now - cached[1] < COUNTS_MAX_AGE
        ):
            return succeed(dict(cached[2]))
        result: Deferred[dict[str, int]] = Deferred()
        waiting = self._counting.get((key, generation))
        if waiting is not None:
            waiting.append(result)
            return result
        self._counting[(key, generation)] = [result]

        def answer(outcome: dict[str, int] | Failure) -> None:
            waiters = self._counting.pop((key, generation), [])
            if isinstance(outcome, dict) and now is not None:
                self._counts[key] = (generation, now, dict(outcome))
            for waiter in waiters:
                if isinstance(outcome, Failure):
                    waiter.errback(outcome)
                else:
                    waiter.callback(dict(outcome))

        self._read(read).addBoth(answer)
        return result

    def _read(self, read: Read) -> Deferred[Any]:
        """Run ``read(connection)`` on the read thread (on the writer when there is none)."""
        if self._closing:
            return fail(StoreUnavailableError("queue store closed"))
        result: Deferred[Any] = Deferred()
        if self._reading:
            self._reader.submit(read, result)
        else:
            self._writer.submit(ReadOp(read, result))
        return result

    def record_report(
        self, message_id: str, report: DeliveryReport | FeedbackReport, now: float
    ) -> Deferred[list[Noted]]:
        """Record a bounce or complaint report about ``message_id`` with its events and
        suppressions, in one writer transaction; see :mod:`rail.store.bouncereports`."""
        writer = self._writer

        def work(connection: Connection) -> tuple[object, int]:
            return record_report(connection, message_id, report, now, writer.subscriptions), 0

        return self._submit(lambda token: AdminOp(work, True, token))

    def observe_inbound(self, callback: Callable[[list[WebhookJob]], object]) -> None:
        """Call ``callback(jobs)`` whenever inbound mail is spooled; see IInboundStore."""
        self._inbound_observers.append(callback)

    def _submit(self, make: Callable[[Any], Any]) -> Deferred[Any]:
        if self._closing:
            return fail(StoreUnavailableError("queue store closed"))
        result: Deferred[Any] = Deferred()
        self._writer.submit(make(result))
        return result

    def close(self) -> Deferred[None]:
        """Answer everything already submitted, stop the writer thread and close the
        database; later calls fail with :class:`StoreUnavailableError`."""
        done: Deferred[None] = Deferred()
        if not self._started:
            self._closing = True
            self._close_waiters = []
            self._fire(self._writer.refuse_waiting())
            done.callback(None)
        elif self._close_waiters is None:
            self._closing = True
            self._close_waiters = [done]
            self._reader.stop()
            self._writer.stop()
        elif self._closing and not self._close_waiters:
            done.callback(None)  # already closed
        else:
            self._close_waiters.append(done)
        return done

    def _deliver_from_thread(self, outcomes: list[Outcome]) -> None:
        self._reactor.callFromThread(self._fire_writer, outcomes)

    def _deliver_reads_from_thread(self, outcomes: list[Outcome]) -> None:
        self._reactor.callFromThread(self._fire, outcomes)

    def _fire_writer(self, outcomes: list[Outcome]) -> None:
        """The writer's answers may follow changes: counts read before are not reused."""
        self._writes_answered += 1
        queued = inserted()
        if queued != self._events_seen:
            self._events_seen = queued
            for observer in self._event_observers:
                observer()
        self._fire(outcomes)

    def _fire(self, outcomes: list[Outcome]) -> None:
        failed = [r for _, r in outcomes if isinstance(r, StoreUnavailableError)]
        if failed:
            _log.error(
                "Queue store failed {count} operation(s): {error}",
                count=len(failed),
                error=str(failed[0]),
            )
        # Observers first: the scheduler's claim is queued before callers react.
        inbound = [self._inbound_accepts.pop(id(token), None) for token, _ in outcomes]
        if any(
            isinstance(result, Accepted | NewMessage) and (spooled is None or spooled.forwards)
            for (_, result), spooled in zip(outcomes, inbound, strict=True)
        ):
            for observer in self._observers:
                observer()
        jobs = [
            job
            for (_, result), spooled in zip(outcomes, inbound, strict=True)
            if isinstance(result, Accepted) and spooled is not None
            for job in new_jobs(spooled)
        ]
        if jobs:
            for hand_over in self._inbound_observers:
                hand_over(jobs)
        for _, result in outcomes:
            if isinstance(result, Stale):
                for tell in self._stale_observers:
                    tell(result)
        for deferred, result in outcomes:
            if isinstance(result, BaseException):
                deferred.errback(result)
            else:
                deferred.callback(result)

    def _stopped_from_thread(self) -> None:
        self._reactor.callFromThread(self._finish_close)

    def _finish_close(self) -> None:
        self._closing = True
        self._writer.join()  # its last act was to schedule this call: returns at once
        self._reader.join()  # stopped with the writer, after at most one short read
        waiters, self._close_waiters = self._close_waiters or [], []
        for waiter in waiters:
            waiter.callback(None)
