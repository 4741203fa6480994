"""The store's single writer thread: group commit of acceptances, on either engine.

Every write of the server runs here, never on the reactor (reads run on the thread of
:mod:`rail.store.reader`). The thread takes the first waiting operation
(:mod:`rail.store.ops`), drains whatever else is waiting (up to :data:`MAX_BATCH`) and
writes all of that batch in ONE transaction, with a savepoint per operation so one bad
message does not fail the others (on PostgreSQL, where a savepoint is a round trip, the
batch is first written without them and written again with them only when an operation
failed: :attr:`rail.store.db.Dialect.savepoints_after_failure`). The COMMIT is the
fsync (SQLite ``synchronous=FULL``, PostgreSQL ``synchronous_commit=on``), so concurrent
acceptances share it and throughput grows with concurrency. Claims (and reads, when
there is no read thread) run after the commit; a retention step runs last, in
transactions of its own, once the batch's callers have their answers.

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
from contextlib import AbstractContextManager
from queue import Empty, SimpleQueue
from typing import Any, Literal, cast

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
from rail.store.backend import ASSUMED_WRONG, Backend
from rail.store.db import DATABASE_ERRORS, Connection, dialect_of
from rail.store.deliveries import claim_due, quarantine_message, record_result
from rail.store.emit import failed_events, gave_up_events
from rail.store.events import claim_events, insert_events, quarantine_event, record_event
from rail.store.inbound import claim_webhooks, quarantine_inbound, record_webhook
from rail.store.jobends import lock_messages
from rail.store.lease import LEASE_SECONDS, Lease, LeaseLostError, node_id, release, renew
from rail.store.model import (
    Accepted,
    JobQueue,
    NewMessage,
    Purged,
    Quarantined,
    QueueFullError,
    Stale,
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
    LeaseOp,
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
from rail.store.recordbatch import plain, record_plain
from rail.store.sharedusage import USAGE_RETENTION, add_usage, purge_usage
from rail.store.suppressions import Known, assume_unlisted, normalize

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
# Per queue: the table of its jobs, the column a renewal finds them by (the first part of a
# job's key), and the columns that name one row (what a release names).
_LEASE_TABLES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "outbound": ("recipients", "message_id", ("message_id", "idx")),
    "inbound": ("webhooks", "message_id", ("message_id", "client")),
    "events": ("events", "id", ("id",)),
}
_STOP = object()
_WRITE_ERRORS: tuple[type[Exception], ...] = (*DATABASE_ERRORS, OSError)


class _RetryWithSavepointsError(Exception):
    """An operation failed in a batch written without savepoints: roll it back and write
    the batch again, each operation under its own savepoint."""

    @property
    def assumed_wrong(self) -> bool:
        """Whether what failed was an assumption of the first pass (a suppressed
        recipient, a full queue): the batch is then written again after asking."""
        cause = self.__cause__
        return isinstance(cause, QueueFullError) or (
            getattr(cause, "sqlstate", None) == ASSUMED_WRONG
        )


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


def _pairs(messages: Sequence[NewMessage]) -> list[tuple[str, str]]:
    """Each ``(client, normalized recipient)`` of ``messages``: what the suppression list
    is asked or checked for."""
    return [(m.client, normalize(r)) for m in messages for r in m.recipients]


def _accepted(writes: Sequence[Write | AdminOp]) -> list[NewMessage]:
    """The outbound messages a batch accepts (their suppression look-ups are made ahead)."""
    messages: list[NewMessage] = []
    for op in writes:
        if isinstance(op, AcceptOp):
            messages.append(op.message)
        elif isinstance(op, AcceptManyOp):
            messages.extend(message for message, _ in op.items)
    return messages


def _recorded(writes: Sequence[Write | AdminOp]) -> tuple[list[str], list[str]]:
    """The outbound and the inbound messages whose rows a batch locks: its results,
    quarantines and an operator's actions on one message."""
    outbound: list[str] = []
    inbound: list[str] = []
    for op in writes:
        if isinstance(op, RecordOp):
            outbound.append(op.result.message_id)
        elif isinstance(op, WebhookRecordOp):
            inbound.append(op.result.message_id)
        elif isinstance(op, QuarantineOp) and op.queue in ("outbound", "inbound"):
            (outbound if op.queue == "outbound" else inbound).append(op.message_id)
        elif isinstance(op, AdminOp) and op.write:
            if op.message_id is not None:
                outbound.append(op.message_id)
            if op.inbound_id is not None:
                inbound.append(op.inbound_id)
    return outbound, inbound


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
        lease: float = LEASE_SECONDS,
        node: str | None = None,
        leases: bool | None = None,
    ) -> None:
        """``lease``: seconds a claim holds its jobs, when the database is shared
        (:attr:`rail.store.db.Dialect.leases`); ``node``: the id written into the rows
        this writer claims, which turns leases on whatever the engine (tests: two nodes
        on one database); by default this process's :func:`node_id` where the engine
        shares its database, else none (no leases); ``leases``: False turns them off
        whatever the engine (the tests of a single node's contract), None leaves it to the
        engine."""
        self._backend = backend
        self.lease = lease
        self._node = node
        self._leases = leases
        # This node's id in the rows it claims, or None: claims take no leases (set by start).
        self.node: str | None = None
        # This process's id in the shared usage rows (rail.store.sharedusage), whether or
        # not claims take leases (set by start).
        self.usage_node = ""
        self._connection: Connection | None = None
        # A succeeded operation's savepoint still open (see Dialect.next_savepoint).
        self._open_savepoint = False
        # Whether operations run under savepoints (see _write); batches written again
        # after a failed first pass without them, for tests and metrics.
        self._savepoints = True
        self.retried_batches = 0
        # Whether this pass writes on assumptions (Dialect.assumes); batches written
        # again because one was wrong, for tests and metrics.
        self._assume = False
        self.asked_again = 0
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
        if self._leases is False:
            self.node = None
        elif self._node is not None:
            self.node = self._node
        elif dialect_of(connection).leases:
            self.node = node_id()
        self.usage_node = node_id() if self._node is None else self._node
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
        """One transaction for the whole batch: one fsync however many messages. Where
        savepoints cost a round trip (:attr:`Dialect.savepoints_after_failure`), the
        batch is first written without them, in pipeline mode; if an operation fails,
        that transaction is rolled back (nothing of it was committed) and the batch
        written again with a savepoint per operation, so the failure is that operation's
        alone."""
        dialect = dialect_of(self._connected())
        if dialect.savepoints_after_failure:
            self._savepoints = False
            try:
                for assume in (True, False) if dialect.assumes else (False,):
                    self._assume = assume
                    try:
                        return self._write_batch(writes)
                    except _RetryWithSavepointsError as retry:
                        if not (assume and retry.assumed_wrong):
                            break
                        self.asked_again += 1
                self.retried_batches += 1
            finally:
                self._savepoints = True
                self._assume = False
        return self._write_batch(writes)

    def _write_batch(self, writes: list[Write | AdminOp]) -> list[Outcome]:
        connection = self._connected()
        pipelined = self._pipelined(connection)
        try:
            if connection.in_transaction:  # a failed ROLLBACK left one open
                connection.execute("ROLLBACK")
            if pipelined is None:
                results, budget, finished = self._apply(connection, writes)
                connection.execute("COMMIT")
            else:
                with pipelined:
                    results, budget, finished = self._apply(connection, writes)
                    # What the next batch assumes is pending, counted after this one's
                    # changes: no round trip of its own.
                    counted = self._backend.pending_later(connection)
                    # Sent behind the batch's statements, answered with them as the
                    # pipeline ends: one round trip for all of it.
                    connection.execute("COMMIT")
        except _WRITE_ERRORS as error:
            if pipelined is not None and not self._backend.lost(connection):
                # Whichever statement failed (its error may surface at a later one), the
                # server skipped or refused the COMMIT: nothing was committed. Written
                # again with savepoints, which tell whose error it was. Only a lost
                # connection leaves a COMMIT's outcome unknown: that is answered below.
                self._rollback()
                raise _RetryWithSavepointsError() from error
            self._rollback()
            return [(op.token, _unavailable("cannot write to queue", error)) for op in writes]
        except BaseException:
            self._rollback()
            raise
        self.commits += 1
        if pipelined is None:
            self.pending += budget.messages - finished
        else:
            self.pending = counted()  # answered with the COMMIT
        return [(op.token, result) for op, result in zip(writes, results, strict=True)]

    def _pipelined(self, connection: Connection) -> AbstractContextManager[object] | None:
        """Pipeline mode for the first pass without savepoints, where the engine has it
        (:meth:`rail.store.pg.PGConnection.pipelined`); None: statements are answered one
        by one."""
        pipelined = getattr(connection, "pipelined", None)
        if self._savepoints or pipelined is None:
            return None
        return cast(AbstractContextManager[object], pipelined())

    def _apply(
        self, connection: Connection, writes: list[Write | AdminOp]
    ) -> tuple[list[object], Budget, int]:
        """The batch's statements, in the transaction this opens: each operation's
        result, the budget (what the batch adds) and how many messages it finished."""
        connection.execute(dialect_of(connection).begin)
        self._open_savepoint = False
        lock_messages(connection, *_recorded(writes))  # one order on every node
        accepted = _accepted(writes)
        if self._assume:  # what the pass assumes is checked at the end (Dialect.assumes)
            known: Known | None = assume_unlisted(_pairs(accepted))
        else:
            # Asked before the look-ahead and read after it: in pipeline mode both are
            # answered in one round trip.
            shared = self._backend.shared
            pending = self._backend.pending_later(connection) if shared else None
            known = look_ahead(connection, accepted)
            if pending is not None:
                self.pending = pending()
        budget = Budget(
            free_bytes=self._backend.free_bytes(),
            min_free_bytes=self._min_free_bytes,
            pending=self.pending,
            max_queued=self._max_queued,
            known=known,
        )
        finished = 0
        results: list[object] = []
        # Plain delivery results waiting to be recorded together (rail.store.recordbatch),
        # in the first pass on PostgreSQL, where each would otherwise cost round trips.
        together = not self._savepoints and dialect_of(connection).one_statement_inserts
        run: list[tuple[int, RecordOp]] = []
        for op in writes:
            if run and not (isinstance(op, RecordOp) and together and plain(op.result)):
                finished += self._record_run(run, budget, results)  # before what follows
                run = []
            if isinstance(op, RecordOp | AdminOp) and not self._assume:
                budget.known = None  # it may change the suppression list (checked at the end)
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
            elif together and plain(op.result):
                run.append((len(results), op))
                results.append(None)  # answered when the run is recorded
            else:
                results.append(None)
                finished += self._record_alone(op, budget, results, len(results) - 1)
        if run:
            finished += self._record_run(run, budget, results)
        if self._assume and accepted:
            self._backend.check_batch(connection, _pairs(accepted), self._max_queued)
        if self._backend.shared:  # every node's limits count these (same transaction)
            add_usage(connection, self.usage_node, _counted(writes, results))
        return results, budget, finished

    def _record_alone(self, op: RecordOp, budget: Budget, results: list[object], index: int) -> int:
        """Record ``op`` on its own, its answer at ``index``; 1 if its message finished."""
        outcome = self._record_one(op)
        if not isinstance(outcome, tuple):
            results[index] = outcome  # the error, or Stale, for this caller only
            return 0
        left, notification = outcome
        budget.messages += notification is not None
        results[index] = notification
        return int(left)

    def _record_run(
        self, run: list[tuple[int, RecordOp]], budget: Budget, results: list[object]
    ) -> int:
        """Record a run of plain results together; those it cannot take, alone. How many
        of those messages finished (the pending count is read after the batch anyway)."""
        finished = 0
        recorded = record_plain(
            self._conn, [op.result for _, op in run], self.subscriptions, self.node
        )
        for (index, op), outcome in zip(run, recorded, strict=True):
            if outcome is None:
                finished += self._record_alone(op, budget, results, index)
            elif isinstance(outcome, LeaseLostError):
                results[index] = Stale("outbound", op.result.message_id, str(outcome))
        return finished

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
        if not self._savepoints:
            try:
                return work()
            except Exception as error:  # the batch is written again, with savepoints
                raise _RetryWithSavepointsError() from error
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
                renew(self._conn, table, column, op.keys, node, op.now + self.lease)
            else:
                release(self._conn, table, row, op.keys, node)

        return self._savepoint(work, f"cannot {op.action} leases")

    def _record_one(self, op: RecordOp) -> object:
        def record() -> object:
            outcome = record_result(self._conn, op.result, op.dsn, self.subscriptions, self.node)
            if op.result.events:
                result = op.result
                insert_events(self._conn, result.events, result.attempted_at, self.subscriptions)
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
                lambda: record_webhook(self._conn, result, op.dsn, self.subscriptions, self.node),
            ),
            f"cannot record webhook of {result.message_id}",
        )

    def _record_event_one(self, op: EventRecordOp) -> object:
        return self._savepoint(
            self._unless_stale(
                "events",
                op.result.event_id,
                lambda: record_event(self._conn, op.result, self.node),
            ),
            f"cannot record event {op.result.event_id}",
        )

    def _quarantine_one(self, op: QuarantineOp) -> object:
        def quarantine() -> Quarantined | None:
            connection, message_id, wanted = self._conn, op.message_id, self.subscriptions
            if op.queue == "outbound":
                ended = quarantine_message(connection, message_id, op.reason, op.now, self.node)
                if not ended:
                    return None
                failed_events(connection, message_id, ended, op.kind, op.reason, op.now, wanted)
            elif op.queue == "inbound":
                clients = quarantine_inbound(connection, message_id, op.reason, op.now, self.node)
                if not clients:
                    return None
                gave_up_events(connection, message_id, clients, op.kind, op.reason, op.now, wanted)
            elif not quarantine_event(connection, message_id, op.reason, op.now, self.node):
                return None
            return Quarantined(op.queue, message_id, op.kind, op.reason)

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
        connection = self._conn
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
                connection.execute(dialect_of(connection).begin)
                if queue != "events":  # in the one order every node locks messages in
                    ids = list(bad)
                    lock_messages(connection, *((ids, []) if queue == "outbound" else ([], ids)))
                done = []
                for message_id, reason in bad.items():
                    try:
                        if quarantine(connection, message_id, reason, op.now, self.node):
                            done.append(Quarantined(queue, message_id, "corrupt", reason))
                    except LeaseLostError:
                        pass  # another node holds it, and will find it damaged too
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
        connection = self._conn
        if self.node is None:
            return claim(connection, now, limit, exclude)
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

    def _spool_one(self, op: InboundAcceptOp, budget: Budget) -> object:
        node = self.node
        received = op.message.received_at
        lease = None if node is None else Lease(node, received, received + self.lease)
        return self._savepoint(
            lambda: spool_inbound(self._conn, op.message, budget, lease),
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
