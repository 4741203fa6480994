"""The SQLite queue's single writer thread: group commit of acceptances.

Every SQLite write of the server runs here, never on the reactor (reads run on the thread
of :mod:`rail.store.reader`). The thread takes the first waiting operation, drains whatever
else is waiting (up to :data:`MAX_BATCH`) and writes all acceptances of that batch in ONE
transaction, with a savepoint per message so one bad message does not fail the others. The
COMMIT is the fsync, so concurrent acceptances share it and throughput grows with
concurrency. Claims (and reads, when there is no read thread) run after the commit; a
retention step runs last, in transactions of its own, once the batch's callers have their
answers.

This module knows nothing of Deferreds: results go back through the ``deliver`` callable,
as ``(token, result)`` pairs where a result that is an exception means failure.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any, Literal

import attrs
from twisted.logger import Logger

from rail.events.jobs import EventResult
from rail.events.subscriptions import NO_SUBSCRIPTIONS, Subscriptions
from rail.inbound.model import InboundMessage, WebhookResult
from rail.store.bouncereports import attach_reports
from rail.store.db import dialect_of
from rail.store.deliveries import (
    DSNBuilder,
    claim_due,
    insert_message,
    quarantine_message,
    record_result,
)
from rail.store.emit import accepted_events
from rail.store.events import claim_events, insert_events, quarantine_event, record_event
from rail.store.inbound import (
    claim_webhooks,
    insert_inbound,
    quarantine_inbound,
    record_webhook,
)
from rail.store.lease import (
    LEASE_SECONDS,
    Lease,
    LeaseLostError,
    node_id,
    release,
    renew,
)
from rail.store.messagemeta import read_meta
from rail.store.model import (
    Accepted,
    Conflict,
    IdempotencyKey,
    JobQueue,
    JobResult,
    MessageMeta,
    MessageStatus,
    NewMessage,
    Purged,
    Quarantined,
    QuarantineKind,
    QueueFullError,
    RecipientStatus,
    Replayed,
    Stale,
    StoreUnavailableError,
    overall_status,
)
from rail.store.purge import mark_finished, purge_step
from rail.store.reserve import settle
from rail.store.sendcheck import (
    find_suppressed,
    insert_suppressed,
    merged,
    read_suppressed,
    replayed_suppressed,
    suppressed_answer,
    suppressed_event,
)

__all__ = [
    "IDEMPOTENCY_TTL",
    "MAX_BATCH",
    "AcceptManyOp",
    "AcceptOp",
    "AdminOp",
    "ClaimOp",
    "Claimed",
    "EventClaimOp",
    "EventRecordOp",
    "InboundAcceptOp",
    "LeaseOp",
    "PurgeOp",
    "QuarantineOp",
    "ReadOp",
    "RecordOp",
    "WebhookClaimOp",
    "WebhookRecordOp",
    "Writer",
    "count_pending",
    "read_status",
]

MAX_BATCH = 512
# Idempotency rows live at least this long, in ``received_at`` seconds (request_id: 24 h);
# older ones are deleted by retention's purge steps.
IDEMPOTENCY_TTL = 24 * 60 * 60.0

_log = Logger()

Outcome = tuple[Any, object]
Deliver = Callable[[list[Outcome]], None]


@attrs.frozen
class AcceptOp:
    """Make ``message`` durable; ``token`` comes back with the result."""

    message: NewMessage
    idempotency: IdempotencyKey | None
    token: Any


@attrs.frozen
class AcceptManyOp:
    """Make each of ``items`` durable in the same transaction (one fsync), each under its
    own savepoint: the result is the list of their results in order, where a refused
    item's is its QueueFullError or StoreUnavailableError."""

    items: tuple[tuple[NewMessage, IdempotencyKey | None], ...]
    token: Any


@attrs.frozen
class ReadOp:
    """Run ``read(connection)`` and answer its result (a SQLite error becomes
    StoreUnavailableError): reads go to the writer only when no read connection can be
    opened (a database in exclusive locking mode, see :func:`rail.store.schema.open_writable`)."""

    read: Callable[[sqlite3.Connection], object]
    token: Any


@attrs.frozen
class ClaimOp:
    """Read up to ``limit`` due jobs (see :func:`rail.store.deliveries.claim_due`)."""

    now: float
    limit: int
    exclude: frozenset[tuple[str, str]]
    token: Any


@attrs.frozen
class RecordOp:
    """Record one delivery attempt; a DSN, if due, is made with ``dsn``."""

    result: JobResult
    dsn: DSNBuilder | None
    token: Any


@attrs.frozen
class InboundAcceptOp:
    """Spool an inbound message with its webhook jobs."""

    message: InboundMessage
    token: Any


@attrs.frozen
class WebhookClaimOp:
    """Read up to ``limit`` due webhook jobs."""

    now: float
    limit: int
    exclude: frozenset[tuple[str, str]]
    token: Any


@attrs.frozen
class WebhookRecordOp:
    """Record one webhook POST; a DSN, if due, is made with ``dsn``."""

    result: WebhookResult
    dsn: DSNBuilder | None
    token: Any


@attrs.frozen
class EventClaimOp:
    """Read up to ``limit`` due event jobs (see :func:`rail.store.events.claim_events`)."""

    now: float
    limit: int
    exclude: frozenset[str]
    token: Any


@attrs.frozen
class EventRecordOp:
    """Record one event POST; the result is whether the event was still pending."""

    result: EventResult
    token: Any


@attrs.frozen
class QuarantineOp:
    """Quarantine ``message_id`` of ``queue`` (see :meth:`IDeliveryQueue.quarantine`);
    the result is the :class:`Quarantined` record, or None if nothing was pending."""

    queue: Literal["outbound", "inbound", "events"]
    message_id: str
    kind: QuarantineKind
    reason: str
    now: float
    token: Any


@attrs.frozen
class LeaseOp:
    """Renew this node's leases on the jobs of ``queue`` whose keys are ``keys``
    (``renew``), or release them (``release``: ``keys`` are the rows' keys, see
    :data:`_LEASE_ROWS`); the result is None. Nothing to do without leases."""

    action: Literal["renew", "release"]
    queue: JobQueue
    keys: tuple[Any, ...]
    now: float
    token: Any


@attrs.frozen
class AdminOp:
    """Run ``work(connection)`` (:mod:`rail.store.admin`), which returns its answer and
    its change to the number of pending messages: inside the batch's transaction, under
    a savepoint of its own, when ``write``; else after the commit, as reads are."""

    work: Callable[[sqlite3.Connection], tuple[object, int]]
    write: bool
    token: Any


@attrs.frozen
class Claimed:
    """What a claim hands back: the jobs, and the messages it quarantined because their
    rows failed verification (already on disk)."""

    jobs: list[Any]
    quarantined: list[Quarantined]


@attrs.frozen
class PurgeOp:
    """One retention step (:func:`rail.store.purge.purge_step`), run in transactions of its
    own once the other operations of its batch are answered; the result is :class:`Purged`."""

    now: float
    body_before: float
    record_before: float
    limit: int
    vacuum_pages: int
    token: Any


Op = (
    AcceptOp
    | AcceptManyOp
    | ReadOp
    | ClaimOp
    | RecordOp
    | InboundAcceptOp
    | WebhookClaimOp
    | WebhookRecordOp
    | QuarantineOp
    | AdminOp
    | PurgeOp
    | EventClaimOp
    | EventRecordOp
    | LeaseOp
)
_WRITES = (
    AcceptOp,
    AcceptManyOp,
    RecordOp,
    InboundAcceptOp,
    WebhookRecordOp,
    QuarantineOp,
    EventRecordOp,
    LeaseOp,
)
_Write = (
    AcceptOp
    | AcceptManyOp
    | RecordOp
    | InboundAcceptOp
    | WebhookRecordOp
    | QuarantineOp
    | EventRecordOp
    | LeaseOp
)
_QUARANTINE = {
    "outbound": quarantine_message,
    "inbound": quarantine_inbound,
    "events": quarantine_event,
}
_CLAIM: dict[str, Callable[..., tuple[list[Any], dict[str, str]]]] = {
    "outbound": claim_due,
    "inbound": claim_webhooks,
    "events": claim_events,
}
# Per queue: the table of its jobs, the column a renewal finds them by (the first part of a
# job's key), and the columns that name one row (what a release names).
_LEASE_TABLES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "outbound": ("recipients", "message_id", ("message_id", "idx")),
    "inbound": ("webhooks", "message_id", ("message_id", "client")),
    "events": ("events", "id", ("id",)),
}
_STOP = object()


@attrs.define
class _Budget:
    """What the batch being written adds, checked against the capacity limits."""

    free_bytes: int
    messages: int = 0
    bytes: int = 0


def _is_write(op: Op) -> bool:
    return isinstance(op, _WRITES) or (isinstance(op, AdminOp) and op.write)


def _never(client: str) -> bool:
    return False


def count_pending(connection: sqlite3.Connection) -> int:
    """Messages with a recipient still to deliver: what ``max_queued`` limits."""
    row = connection.execute(
        "SELECT count(DISTINCT message_id) FROM recipients WHERE status IN ('queued', 'deferred')"
    ).fetchone()
    return int(row[0])


class Writer:
    """Owns the connection once started; talk to it only through :meth:`submit`.

    Operations submitted before :meth:`start` wait in the queue. ``pending`` and ``commits``
    are written by the thread only; reading them from another thread gives a recent value,
    which is all tests and metrics need.
    """

    _connection: sqlite3.Connection

    def __init__(
        self,
        directory: Path,
        *,
        max_queued: int,
        min_free_bytes: int,
        deliver: Deliver,
        stopped: Callable[[], None],
        reserve_bytes: int = 0,
        lease: float = LEASE_SECONDS,
        node: str | None = None,
        leases: bool | None = None,
    ) -> None:
        """``reserve_bytes``: the disk reserve kept in ``directory`` (see
        :mod:`rail.store.reserve`), freed and made again as free space changes;
        ``lease``: seconds a claim holds its jobs, when the database is shared
        (:attr:`rail.store.db.Dialect.leases`); ``node``: the id written into the rows
        this writer claims, which turns leases on whatever the engine (tests: two nodes
        on one database); by default this process's :func:`node_id` where the engine
        shares its database, else none (no leases); ``leases``: False turns them off
        whatever the engine (the tests of a single node's contract), None leaves it to the
        engine."""
        self._directory = directory
        self.lease = lease
        self._node = node
        self._leases = leases
        # This node's id in the rows it claims, or None: claims take no leases (set by start).
        self.node: str | None = None
        self._max_queued = max_queued
        self._min_free_bytes = min_free_bytes
        self._reserve_bytes = reserve_bytes
        self._deliver = deliver
        self._stopped = stopped
        self._queue: SimpleQueue[object] = SimpleQueue()
        self.pending = 0
        self.commits = 0
        # Read by the writer thread when it stores events; replaced whole by the service.
        self.subscriptions: Subscriptions = NO_SUBSCRIPTIONS
        # Whether a client's mail is recorded but never delivered (its events say
        # ``sandbox``); replaced by the service, read by the writer thread.
        self.sandboxed: Callable[[str], bool] = _never
        # A daemon thread: if the process exits without close(), SQLite's journal already
        # keeps every committed message and discards the uncommitted ones.
        self._thread = threading.Thread(target=self._run, name="rail-store-writer", daemon=True)

    def start(self, connection: sqlite3.Connection) -> None:
        """Hand ``connection`` to a new thread; from now on only that thread uses it."""
        self._connection = connection
        if self._leases is False:
            self.node = None
        elif self._node is not None:
            self.node = self._node
        elif dialect_of(connection).leases:
            self.node = node_id()
        self.pending = count_pending(connection)
        self._thread.start()

    def submit(self, op: Op) -> None:
        self._queue.put(op)

    def stop(self) -> None:
        """Finish what was submitted before, close the connection, then call ``stopped``."""
        self._queue.put(_STOP)

    def join(self) -> None:
        self._thread.join()

    def refuse_waiting(self) -> list[Outcome]:
        """For a writer never started: fail whatever was submitted."""
        outcomes: list[Outcome] = []
        while True:
            try:
                op = self._queue.get_nowait()
            except Empty:
                return outcomes
            if isinstance(op, Op):
                outcomes.append((op.token, StoreUnavailableError("queue store closed")))

    def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                batch = [self._queue.get()]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except Empty:
                        break
                stopping = any(op is _STOP for op in batch)
                ops = [op for op in batch if isinstance(op, Op) and not isinstance(op, PurgeOp)]
                if ops:
                    self._deliver(self._run_batch(ops))
                # Retention waits until the batch's callers have their answers.
                for op in batch:
                    if isinstance(op, PurgeOp):
                        self._deliver([(op.token, self._purge(op))])
        finally:
            try:
                self._connection.close()
            finally:
                self._stopped()

    def _run_batch(self, ops: Sequence[Op]) -> list[Outcome]:
        writes: list[_Write | AdminOp] = [op for op in ops if _is_write(op)]  # type: ignore[misc]
        outcomes: list[Outcome] = []
        try:
            if writes:
                outcomes.extend(self._write(writes))
            outcomes.extend((op.token, self._read(op)) for op in ops if not _is_write(op))
        except Exception as error:  # a bug: answer every caller rather than hang them
            answered = {id(token) for token, _ in outcomes}
            outcomes.extend((op.token, error) for op in ops if id(op.token) not in answered)
        return outcomes

    def _write(self, writes: list[_Write | AdminOp]) -> list[Outcome]:
        """One transaction for the whole batch: one fsync however many messages."""
        connection = self._connection
        try:
            budget = _Budget(free_bytes=self._free_bytes())
            if connection.in_transaction:  # a failed ROLLBACK left one open
                connection.execute("ROLLBACK")
            connection.execute("BEGIN IMMEDIATE")
            finished = 0
            results: list[object] = []
            for op in writes:
                if isinstance(op, AcceptOp):
                    results.append(self._accept_one(op, budget))
                elif isinstance(op, AcceptManyOp):
                    results.append(
                        [
                            self._accept_one(AcceptOp(message, key, None), budget)
                            for message, key in op.items
                        ]
                    )
                elif isinstance(op, InboundAcceptOp):
                    results.append(self._spool_one(op, budget))
                elif isinstance(op, WebhookRecordOp):
                    notification = self._record_webhook_one(op)
                    budget.messages += isinstance(notification, NewMessage)
                    results.append(notification)
                elif isinstance(op, AdminOp):
                    results.append(self._admin_one(op, budget))
                elif isinstance(op, EventRecordOp):
                    results.append(self._record_event_one(op))
                elif isinstance(op, LeaseOp):
                    results.append(self._lease_one(op))
                elif isinstance(op, QuarantineOp):
                    quarantined = self._quarantine_one(op)
                    finished += isinstance(quarantined, Quarantined) and op.queue == "outbound"
                    results.append(quarantined)
                else:
                    outcome = self._record_one(op)
                    if isinstance(outcome, tuple):
                        left, notification = outcome
                        finished += left
                        budget.messages += notification is not None
                        results.append(notification)
                    else:
                        results.append(outcome)
            connection.execute("COMMIT")
        except (sqlite3.Error, OSError) as error:
            self._rollback()
            return [(op.token, _unavailable("cannot write to queue", error)) for op in writes]
        except BaseException:
            self._rollback()
            raise
        self.commits += 1
        self.pending += budget.messages - finished
        return [(op.token, result) for op, result in zip(writes, results, strict=True)]

    def _free_bytes(self) -> int:
        """Free space for this batch, after freeing or making the disk reserve as the
        free space asks (:mod:`rail.store.reserve`)."""
        stats = os.statvfs(self._directory)
        free = stats.f_bavail * stats.f_frsize
        try:
            action = settle(self._directory, self._reserve_bytes, self._min_free_bytes, free)
        except OSError as error:
            _log.error("cannot free the disk reserve: {error}", error=str(error))
            return free
        if action is None:
            return free
        if action == "released":
            _log.warn(
                "disk nearly full: freed the {size}-byte reserve so the queue can keep"
                " recording deliveries; new mail is refused until free space is back",
                size=self._reserve_bytes,
            )
        else:
            _log.info("disk reserve of {size} bytes allocated again", size=self._reserve_bytes)
        stats = os.statvfs(self._directory)
        return stats.f_bavail * stats.f_frsize

    def _rollback(self) -> None:
        try:
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # retried before the next BEGIN

    def _purge(self, op: PurgeOp) -> Purged | Exception:
        """One retention step; a failure is answered (the next step tries again)."""
        self._rollback()
        try:
            return purge_step(
                self._connection,
                now=op.now,
                body_before=op.body_before,
                record_before=op.record_before,
                keys_before=op.now - IDEMPOTENCY_TTL,
                limit=op.limit,
                vacuum_pages=op.vacuum_pages,
            )
        except (sqlite3.Error, OSError) as error:
            self._rollback()
            return _unavailable("cannot purge queue", error)
        except Exception as error:  # a bug: answer the caller rather than hang it
            self._rollback()
            return error

    def _savepoint(self, work: Callable[[], object], failed: str) -> object:
        """Run ``work`` under its own savepoint, so one operation's failure (a DSN that
        cannot be stored or built, a message over the limits, a damaged row) fails only
        its caller. A QueueFullError is returned as the result; any other error becomes
        StoreUnavailableError naming ``failed``, unless SQLite rolled back the whole
        transaction (then the batch fails)."""
        connection = self._connection
        connection.execute("SAVEPOINT op")
        try:
            result = work()
        except Exception as error:  # a bug or a poison row: fail this caller, not the batch
            if not connection.in_transaction:
                raise
            connection.execute("ROLLBACK TO op")
            connection.execute("RELEASE op")
            if isinstance(error, QueueFullError):
                return error
            return _unavailable(failed, error)
        connection.execute("RELEASE op")
        return result

    def _admin_one(self, op: AdminOp, budget: _Budget) -> object:
        outcome = self._savepoint(
            lambda: op.work(self._connection), "cannot apply the admin operation"
        )
        if not isinstance(outcome, tuple):
            return outcome  # the error, for this caller only
        result, change = outcome
        budget.messages += change
        return result

    def _unless_stale(
        self, queue: JobQueue, job_id: str, work: Callable[[], object]
    ) -> Callable[[], object]:
        """``work``, answering :class:`Stale` when it raises LeaseLostError (it wrote
        nothing: the store functions check the lease first)."""

        def guarded() -> object:
            try:
                return work()
            except LeaseLostError as error:
                return Stale(queue, job_id, str(error))

        return guarded

    def _lease_one(self, op: LeaseOp) -> object:
        node = self.node
        if node is None or not op.keys:
            return None
        table, column, row = _LEASE_TABLES[op.queue]

        def work() -> None:
            if op.action == "renew":
                renew(self._connection, table, column, op.keys, node, op.now + self.lease)
            else:
                release(self._connection, table, row, op.keys, node)

        return self._savepoint(work, f"cannot {op.action} leases")

    def _record_one(self, op: RecordOp) -> object:
        def record() -> object:
            outcome = record_result(
                self._connection, op.result, op.dsn, self.subscriptions, self.node
            )
            if op.result.events:
                result = op.result
                insert_events(
                    self._connection, result.events, result.attempted_at, self.subscriptions
                )
            return outcome

        message_id = op.result.message_id
        return self._savepoint(
            self._unless_stale("outbound", message_id, record),
            f"cannot record delivery of {message_id}",
        )

    def _record_webhook_one(self, op: WebhookRecordOp) -> object:
        result = op.result
        return self._savepoint(
            self._unless_stale(
                "inbound",
                result.message_id,
                lambda: record_webhook(
                    self._connection, result, op.dsn, self.subscriptions, self.node
                ),
            ),
            f"cannot record webhook of {result.message_id}",
        )

    def _record_event_one(self, op: EventRecordOp) -> object:
        return self._savepoint(
            self._unless_stale(
                "events",
                op.result.event_id,
                lambda: record_event(self._connection, op.result, self.node),
            ),
            f"cannot record event {op.result.event_id}",
        )

    def _quarantine_one(self, op: QuarantineOp) -> object:
        def quarantine() -> Quarantined | None:
            quarantine = _QUARANTINE[op.queue]
            if not quarantine(self._connection, op.message_id, op.reason, op.now, self.node):
                return None
            return Quarantined(op.queue, op.message_id, op.kind, op.reason)

        return self._savepoint(
            self._unless_stale(op.queue, op.message_id, quarantine),
            f"cannot quarantine {op.message_id}",
        )

    def _claim(
        self,
        queue: Literal["outbound", "inbound", "events"],
        op: ClaimOp | WebhookClaimOp | EventClaimOp,
    ) -> Claimed:
        """Due jobs; a message whose row fails verification is quarantined in a
        transaction of its own, then the claim goes on to fill ``limit`` without it.
        Each round quarantines at least one message, so this ends; if the quarantine
        cannot be written, the good jobs found so far are still handed out."""
        claim = _CLAIM[queue]
        quarantine = _QUARANTINE[queue]
        jobs: list[Any] = []
        quarantined: list[Quarantined] = []
        exclude = set(op.exclude)
        while len(jobs) < op.limit:
            found, bad = self._claim_round(claim, op.now, op.limit - len(jobs), exclude)
            jobs.extend(found)
            exclude.update(job.key for job in found)
            if not bad:
                break
            try:
                self._connection.execute(dialect_of(self._connection).begin)
                done = []
                for message_id, reason in bad.items():
                    try:
                        if quarantine(self._connection, message_id, reason, op.now, self.node):
                            done.append(Quarantined(queue, message_id, "corrupt", reason))
                    except LeaseLostError:
                        pass  # another node holds it, and will find it damaged too
                self._connection.execute("COMMIT")
            except sqlite3.Error:
                self._rollback()
                break
            self.commits += 1
            if queue == "outbound":
                self.pending -= len(done)
            quarantined.extend(done)
            if not done:
                break  # reported bad but no longer pending: nothing to gain from a new round
        return Claimed(jobs, quarantined)

    def _claim_round(
        self,
        claim: Callable[..., tuple[list[Any], dict[str, str]]],
        now: float,
        limit: int,
        exclude: set[Any],
    ) -> tuple[list[Any], dict[str, str]]:
        """One claim; with leases, in a transaction of its own that takes the jobs'
        rows for this node (:mod:`rail.store.lease`): committed before they are handed
        out, so no other node can take them too."""
        if self.node is None:
            return claim(self._connection, now, limit, exclude)
        connection = self._connection
        if connection.in_transaction:  # a failed ROLLBACK left one open
            connection.execute("ROLLBACK")
        connection.execute(dialect_of(connection).begin)
        try:
            found = claim(connection, now, limit, exclude, Lease(self.node, now, now + self.lease))
            connection.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self.commits += 1
        return found

    def _spool_one(self, op: InboundAcceptOp, budget: _Budget) -> object:
        """Only the free-space floor applies to inbound mail: ``max_queued`` bounds
        outbound mail waiting on remote hosts."""
        size = len(op.message.data)
        if budget.free_bytes - budget.bytes - size < self._min_free_bytes:
            return QueueFullError("free disk space under the floor")

        node = self.node
        received = op.message.received_at
        lease = None if node is None else Lease(node, received, received + self.lease)

        def spool() -> object:
            insert_inbound(self._connection, op.message, lease)
            for forward in op.message.forwards:  # forwarding: queued with the message
                insert_message(self._connection, forward)
                budget.messages += 1
                budget.bytes += len(forward.data)
            budget.bytes += size
            return Accepted(op.message.id, len(op.message.targets))

        return self._savepoint(spool, f"cannot store inbound message {op.message.id}")

    def _accept_one(self, op: AcceptOp, budget: _Budget) -> object:
        return self._savepoint(
            lambda: self._insert(op.message, op.idempotency, budget),
            f"cannot store message {op.message.id}",
        )

    def _insert(
        self, message: NewMessage, idempotency: IdempotencyKey | None, budget: _Budget
    ) -> object:
        connection = self._connection
        if idempotency is not None:
            row = connection.execute(
                "SELECT fingerprint, message_id, recipients, created_at FROM idempotency"
                " WHERE client = ? AND key = ?",
                (message.client, idempotency.key),
            ).fetchone()
            if row is not None:
                fingerprint, message_id, recipients, created_at = row
                if created_at >= message.received_at - IDEMPOTENCY_TTL:
                    if fingerprint == idempotency.fingerprint:
                        return Replayed(
                            message_id, recipients, replayed_suppressed(connection, message_id)
                        )
                    return Conflict(message_id)
                connection.execute(
                    "DELETE FROM idempotency WHERE client = ? AND key = ?",
                    (message.client, idempotency.key),
                )
        size = len(message.data)
        found = find_suppressed(connection, message)
        # A message whose recipients are all suppressed adds nothing to deliver.
        queues = len(found) < len(message.recipients)
        if queues and self.pending + budget.messages >= self._max_queued:
            raise QueueFullError("queue at capacity")
        if budget.free_bytes - budget.bytes - size < self._min_free_bytes:
            raise QueueFullError("free disk space under the floor")
        insert_message(connection, message, skip=found)
        accepted_events(
            connection,
            message,
            self.subscriptions,
            self.sandboxed,
            queued=len(message.recipients) - len(found),
        )
        if found:
            insert_suppressed(connection, message, found)
            events = [
                suppressed_event(message, message.recipients[index], entry)
                for index, entry in sorted(found.items())
            ]
            insert_events(connection, events, message.received_at, self.subscriptions)
            if len(found) == len(message.recipients):
                # Nothing to deliver: final at once, for retention too.
                mark_finished(connection, "outbound", message.id, message.received_at)
        if idempotency is not None:
            connection.execute(
                "INSERT INTO idempotency (client, key, fingerprint, message_id, recipients,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    message.client,
                    idempotency.key,
                    idempotency.fingerprint,
                    message.id,
                    len(message.recipients),
                    message.received_at,
                ),
            )
        budget.messages += queues
        budget.bytes += size
        return Accepted(message.id, len(message.recipients), suppressed_answer(found, message))

    def _read(self, op: Op) -> object:
        try:
            if isinstance(op, AdminOp):
                return op.work(self._connection)[0]
            if isinstance(op, ClaimOp):
                return self._claim("outbound", op)
            if isinstance(op, WebhookClaimOp):
                return self._claim("inbound", op)
            if isinstance(op, EventClaimOp):
                return self._claim("events", op)
            if isinstance(op, ReadOp):
                return op.read(self._connection)
            raise TypeError(f"not a read: {op!r}")
        except sqlite3.Error as error:
            return _unavailable("cannot read queue", error)


def read_status(
    connection: sqlite3.Connection, client: str, message_id: str
) -> MessageStatus | None:
    """The status of ``message_id`` if ``client`` owns it, else None; never reads the data.
    A quarantined message's ``reason`` is its failed recipients' last reply."""
    row = connection.execute(
        "SELECT id, client, sender, channel, size, received_at,"
        " (SELECT body_purged_at FROM finished WHERE queue = 'outbound' AND id = messages.id)"
        " FROM messages WHERE id = ? AND client = ?",
        (message_id, client),
    ).fetchone()
    if row is None:
        return None
    queued = [
        (
            idx,
            RecipientStatus(
                address=address,
                status=status,
                attempts=attempts,
                last_reply=last_reply,
                next_attempt_at=next_attempt_at,
                updated_at=updated_at,
            ),
        )
        for idx, address, status, attempts, last_reply, next_attempt_at, updated_at in (
            connection.execute(
                "SELECT idx, address, status, attempts, last_reply, next_attempt_at, updated_at"
                " FROM recipients WHERE message_id = ? ORDER BY idx",
                (message_id,),
            )
        )
    ]
    recipients = attach_reports(
        connection, message_id, merged(queued, read_suppressed(connection, message_id))
    )
    meta = read_meta(connection, [message_id]).get(message_id, MessageMeta())
    return MessageStatus(
        id=row[0],
        client=row[1],
        sender=row[2],
        channel=row[3],
        size=row[4],
        received_at=row[5],
        status=overall_status(tuple(r.status for r in recipients)),
        recipients=recipients,
        reason=next((r.last_reply for r in recipients if r.status == "failed"), None),
        body_purged_at=row[6],
        meta=meta,
    )


def _unavailable(text: str, cause: BaseException) -> StoreUnavailableError:
    error = StoreUnavailableError(f"{text}: {cause}")
    error.__cause__ = cause
    return error
