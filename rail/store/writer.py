"""The store's single writer thread: group commit of acceptances, on either engine.

Every write of the server runs here, never on the reactor (reads run on the thread of
:mod:`rail.store.reader`). The thread takes the first waiting operation
(:mod:`rail.store.ops`), drains whatever else is waiting (up to :data:`MAX_BATCH`) and
writes all of that batch in ONE transaction, with a savepoint per operation so one bad
message does not fail the others. The COMMIT is the fsync (SQLite ``synchronous=FULL``,
PostgreSQL ``synchronous_commit=on``), so concurrent acceptances share it and throughput
grows with concurrency. Claims (and reads, when there is no read thread) run after the
commit; a retention step runs last, in transactions of its own, once the batch's callers
have their answers.

A batch whose transaction fails answers every write of it with StoreUnavailableError,
never success: a COMMIT whose outcome is unknown (the PostgreSQL connection was lost) is
a failure for its callers. A lost connection is replaced before the next batch
(:meth:`rail.store.backend.Backend.connect`); while it cannot be, each batch is refused.

This module knows nothing of Deferreds: results go back through the ``deliver`` callable,
as ``(token, result)`` pairs where a result that is an exception means failure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from queue import Empty, SimpleQueue
from typing import Any, Literal

import attrs
from twisted.logger import Logger

from rail.events.subscriptions import NO_SUBSCRIPTIONS, Subscriptions
from rail.store.accept import (
    IDEMPOTENCY_TTL,
    Budget,
    accept_message,
    look_ahead,
    spool_inbound,
)
from rail.store.backend import Backend
from rail.store.db import DATABASE_ERRORS, Connection, dialect_of
from rail.store.deliveries import claim_due, quarantine_message, record_result
from rail.store.events import claim_events, insert_events, quarantine_event, record_event
from rail.store.inbound import claim_webhooks, quarantine_inbound, record_webhook
from rail.store.model import (
    Accepted,
    NewMessage,
    Purged,
    Quarantined,
    QueueFullError,
    StoreUnavailableError,
)
from rail.store.ops import (
    AcceptManyOp,
    AcceptOp,
    AdminOp,
    Claimed,
    ClaimOp,
    Deliver,
    EventClaimOp,
    EventRecordOp,
    InboundAcceptOp,
    Op,
    Outcome,
    PurgeOp,
    QuarantineOp,
    ReadOp,
    RecordOp,
    WebhookClaimOp,
    WebhookRecordOp,
    Write,
    is_write,
)
from rail.store.purge import purge_step
from rail.store.sharedusage import USAGE_RETENTION, add_usage, purge_usage

__all__ = ["MAX_BATCH", "Writer"]

MAX_BATCH = 512

_log = Logger()

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
_STOP = object()
_WRITE_ERRORS: tuple[type[Exception], ...] = (*DATABASE_ERRORS, OSError)


def _never(client: str) -> bool:
    return False


def _counted(writes: Sequence[Write | AdminOp], results: Sequence[object]) -> list[NewMessage]:
    """The outbound messages a batch stored (not replays, conflicts or refusals): what the
    clients' shared usage counts."""
    messages: list[NewMessage] = []
    for op, result in zip(writes, results, strict=True):
        if isinstance(op, AcceptOp) and isinstance(result, Accepted):
            messages.append(op.message)
        elif isinstance(op, AcceptManyOp) and isinstance(result, list):
            messages.extend(
                message
                for (message, _), outcome in zip(op.items, result, strict=True)
                if isinstance(outcome, Accepted)
            )
    return messages


def _accepted(writes: Sequence[Write | AdminOp]) -> list[NewMessage]:
    """The outbound messages a batch accepts (their suppression look-ups are made ahead)."""
    messages: list[NewMessage] = []
    for op in writes:
        if isinstance(op, AcceptOp):
            messages.append(op.message)
        elif isinstance(op, AcceptManyOp):
            messages.extend(message for message, _ in op.items)
    return messages


class Writer:
    """Owns the connection once started; talk to it only through :meth:`submit`.

    Operations submitted before :meth:`start` wait in the queue. ``pending`` and ``commits``
    are written by the thread only; reading them from another thread gives a recent value,
    which is all tests and metrics need.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        max_queued: int,
        min_free_bytes: int,
        deliver: Deliver,
        stopped: Callable[[], None],
    ) -> None:
        self._backend = backend
        # This process's id in the shared usage rows (rail.store.sharedusage); set by the
        # store before start, read by the thread.
        self.node = ""
        self._connection: Connection | None = None
        # A succeeded operation's savepoint still open (see Dialect.next_savepoint).
        self._open_savepoint = False
        self._max_queued = max_queued
        self._min_free_bytes = min_free_bytes
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
        # A daemon thread: if the process exits without close(), the database's journal
        # already keeps every committed message and discards the uncommitted ones.
        self._thread = threading.Thread(target=self._run, name="rail-store-writer", daemon=True)

    def start(self, connection: Connection) -> None:
        """Hand ``connection`` to a new thread; from now on only that thread uses it."""
        self._connection = connection
        self.pending = self._backend.pending(connection)
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
                if self._connection is not None:
                    self._connection.close()
            finally:
                self._stopped()

    def _connected(self) -> Connection:
        """The connection, made again if it was lost; raises StoreUnavailableError."""
        if self._connection is None:
            self._connection = self._backend.connect()
            _log.info("queue store connection restored ({store})", store=self._backend.describe())
        return self._connection

    def _check(self) -> None:
        """After a database error: drop the connection if it is lost, so the next batch
        makes a new one."""
        connection = self._connection
        if connection is not None and self._backend.lost(connection):
            _log.error("queue store connection lost ({store})", store=self._backend.describe())
            self._connection = None
            try:
                connection.close()
            except DATABASE_ERRORS:
                pass

    def _run_batch(self, ops: Sequence[Op]) -> list[Outcome]:
        try:
            self._connected()
        except StoreUnavailableError as error:
            return [(op.token, error) for op in ops]
        writes: list[Write | AdminOp] = [op for op in ops if is_write(op)]  # type: ignore[misc]
        outcomes: list[Outcome] = []
        try:
            if writes:
                outcomes.extend(self._write(writes))
            outcomes.extend((op.token, self._read(op)) for op in ops if not is_write(op))
        except Exception as error:  # a bug: answer every caller rather than hang them
            answered = {id(token) for token, _ in outcomes}
            outcomes.extend((op.token, error) for op in ops if id(op.token) not in answered)
        return outcomes

    def _write(self, writes: list[Write | AdminOp]) -> list[Outcome]:
        """One transaction for the whole batch: one fsync however many messages."""
        connection = self._connected()
        try:
            if connection.in_transaction:  # a failed ROLLBACK left one open
                connection.execute("ROLLBACK")
            connection.execute(dialect_of(connection).begin)
            self._open_savepoint = False
            if self._backend.shared:
                self.pending = self._backend.pending(connection)
            budget = Budget(
                free_bytes=self._backend.free_bytes(),
                min_free_bytes=self._min_free_bytes,
                pending=self.pending,
                max_queued=self._max_queued,
            )
            budget.known = look_ahead(connection, _accepted(writes))
            finished = 0
            results: list[object] = []
            for op in writes:
                if isinstance(op, RecordOp | AdminOp):
                    budget.known = None  # it may change the suppression list
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
            if self._backend.shared:  # every node's limits count these (same transaction)
                add_usage(connection, self.node, _counted(writes, results))
            connection.execute("COMMIT")
        except _WRITE_ERRORS as error:
            self._rollback()
            return [(op.token, _unavailable("cannot write to queue", error)) for op in writes]
        except BaseException:
            self._rollback()
            raise
        self.commits += 1
        self.pending += budget.messages - finished
        return [(op.token, result) for op, result in zip(writes, results, strict=True)]

    @property
    def _conn(self) -> Connection:
        """The connection, inside a batch (where it is known to be there)."""
        assert self._connection is not None
        return self._connection

    def _rollback(self) -> None:
        connection = self._connection
        try:
            if connection is not None and connection.in_transaction:
                connection.execute("ROLLBACK")
        except DATABASE_ERRORS:
            pass  # retried before the next BEGIN
        self._check()

    def _purge(self, op: PurgeOp) -> Purged | Exception:
        """One retention step; a failure is answered (the next step tries again)."""
        try:
            self._connected()
        except StoreUnavailableError as error:
            return error
        self._rollback()
        try:
            purged = purge_step(
                self._conn,
                now=op.now,
                body_before=op.body_before,
                record_before=op.record_before,
                keys_before=op.now - IDEMPOTENCY_TTL,
                limit=op.limit,
                vacuum_pages=op.vacuum_pages,
            )
            if not self._backend.shared:
                return purged
            usage = purge_usage(self._conn, op.now - USAGE_RETENTION, op.limit)
            return attrs.evolve(purged, more=purged.more or usage == op.limit)
        except _WRITE_ERRORS as error:
            self._rollback()
            return _unavailable("cannot purge queue", error)
        except Exception as error:  # a bug: answer the caller rather than hang it
            self._rollback()
            return error

    def _savepoint(self, work: Callable[[], object], failed: str) -> object:
        """Run ``work`` under its own savepoint, so one operation's failure (a DSN that
        cannot be stored or built, a message over the limits, a damaged row) fails only
        its caller. A QueueFullError is returned as the result; any other error becomes
        StoreUnavailableError naming ``failed``, unless the engine rolled back the whole
        transaction or lost the connection (then the batch fails)."""
        connection = self._conn
        merged = dialect_of(connection).next_savepoint
        if merged is not None and self._open_savepoint:
            connection.execute(merged)  # the last operation's, released with this one's made
        else:
            connection.execute("SAVEPOINT op")
        self._open_savepoint = False
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
        if merged is None:
            connection.execute("RELEASE op")
        else:
            self._open_savepoint = True  # released by the next operation's, or by COMMIT
        return result

    def _admin_one(self, op: AdminOp, budget: Budget) -> object:
        outcome = self._savepoint(lambda: op.work(self._conn), "cannot apply the admin operation")
        if not isinstance(outcome, tuple):
            return outcome  # the error, for this caller only
        result, change = outcome
        budget.messages += change
        return result

    def _record_one(self, op: RecordOp) -> object:
        def record() -> object:
            outcome = record_result(self._conn, op.result, op.dsn, self.subscriptions)
            if op.result.events:
                result = op.result
                insert_events(self._conn, result.events, result.attempted_at, self.subscriptions)
            return outcome

        return self._savepoint(record, f"cannot record delivery of {op.result.message_id}")

    def _record_webhook_one(self, op: WebhookRecordOp) -> object:
        return self._savepoint(
            lambda: record_webhook(self._conn, op.result, op.dsn, self.subscriptions),
            f"cannot record webhook of {op.result.message_id}",
        )

    def _record_event_one(self, op: EventRecordOp) -> object:
        return self._savepoint(
            lambda: record_event(self._conn, op.result),
            f"cannot record event {op.result.event_id}",
        )

    def _quarantine_one(self, op: QuarantineOp) -> object:
        def quarantine() -> Quarantined | None:
            if not _QUARANTINE[op.queue](self._conn, op.message_id, op.reason, op.now):
                return None
            return Quarantined(op.queue, op.message_id, op.kind, op.reason)

        return self._savepoint(quarantine, f"cannot quarantine {op.message_id}")

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
        connection = self._conn
        jobs: list[Any] = []
        quarantined: list[Quarantined] = []
        exclude = set(op.exclude)
        while len(jobs) < op.limit:
            found, bad = claim(connection, op.now, op.limit - len(jobs), exclude)
            jobs.extend(found)
            exclude.update(job.key for job in found)
            if not bad:
                break
            try:
                connection.execute(dialect_of(connection).begin)
                done = [
                    Quarantined(queue, message_id, "corrupt", reason)
                    for message_id, reason in bad.items()
                    if quarantine(connection, message_id, reason, op.now)
                ]
                connection.execute("COMMIT")
            except DATABASE_ERRORS:
                self._rollback()
                break
            self.commits += 1
            if queue == "outbound":
                self.pending -= len(done)
            quarantined.extend(done)
            if not done:
                break  # reported bad but no longer pending: nothing to gain from a new round
        return Claimed(jobs, quarantined)

    def _spool_one(self, op: InboundAcceptOp, budget: Budget) -> object:
        return self._savepoint(
            lambda: spool_inbound(self._conn, op.message, budget),
            f"cannot store inbound message {op.message.id}",
        )

    def _accept_one(self, op: AcceptOp, budget: Budget) -> object:
        return self._savepoint(
            lambda: accept_message(
                self._conn, op.message, op.idempotency, budget, self.subscriptions, self.sandboxed
            ),
            f"cannot store message {op.message.id}",
        )

    def _read(self, op: Op) -> object:
        try:
            if isinstance(op, AdminOp):
                return op.work(self._conn)[0]
            if isinstance(op, ClaimOp):
                return self._claim("outbound", op)
            if isinstance(op, WebhookClaimOp):
                return self._claim("inbound", op)
            if isinstance(op, EventClaimOp):
                return self._claim("events", op)
            if isinstance(op, ReadOp):
                return op.read(self._conn)
            raise TypeError(f"not a read: {op!r}")
        except DATABASE_ERRORS as error:
            self._rollback()
            return _unavailable("cannot read queue", error)


def _unavailable(text: str, cause: BaseException) -> StoreUnavailableError:
    error = StoreUnavailableError(f"{text}: {cause}")
    error.__cause__ = cause
    return error
