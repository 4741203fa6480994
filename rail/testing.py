"""Public fakes for Rail's interfaces, each run against the same contract tests as the real thing.

Use these in tests of the code that sits on top of an interface (the HTTP API, SMTP intake)
so those tests need no threads, files or wall time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from rail.events.model import Event
from rail.inbound.model import (
    IInboundStore,
    InboundMessage,
    InboundStatus,
    WebhookJob,
    WebhookResult,
    WebhookState,
    new_jobs,
)
from rail.memoryadmin import MemoryAdmin
from rail.memorysuppressions import MemorySuppressions
from rail.store.accept import IDEMPOTENCY_TTL
from rail.store.adminmodel import AdminAction, Attempt, IAdminQueue
from rail.store.deliveries import DSNBuilder, recipient_domain
from rail.store.emit import failed_event
from rail.store.ids import id_time
from rail.store.integrity import data_problem
from rail.store.model import (
    QUARANTINE_PREFIX,
    Accepted,
    BouncedRecipient,
    BounceReport,
    Conflict,
    DeliveryJob,
    DueRecipient,
    IBatchAccept,
    IDeliveryQueue,
    IdempotencyKey,
    IQueueStore,
    IRetention,
    JobResult,
    MessageStatus,
    NewMessage,
    Purged,
    Quarantined,
    QuarantineKind,
    QueueFullError,
    RecipientState,
    RecipientStatus,
    Replayed,
    StoreUnavailableError,
    SuppressedRecipient,
    overall_status,
)
from rail.store.sendcheck import suppressed_event, suppressed_row
from rail.store.suppressionmodel import ISuppressionList
from rail.store.suppressions import Suppression, normalize

__all__ = ["MemoryStore"]


@attrs.frozen
class _Remembered:
    fingerprint: str
    message_id: str
    recipients: int
    created_at: float
    suppressed: tuple[SuppressedRecipient, ...] = ()


@attrs.define
class _Hook:
    """One webhook job of the in-memory spool."""

    client: str
    url: str
    recipients: tuple[str, ...]
    status: WebhookState
    attempts: int
    next_attempt_at: float | None
    last_reply: str | None
    updated_at: float


@implementer(
    IQueueStore,
    IBatchAccept,
    IDeliveryQueue,
    IInboundStore,
    IRetention,
    IAdminQueue,
    ISuppressionList,
)
class MemoryStore(MemoryAdmin, MemorySuppressions):
    """An in-memory :class:`IQueueStore` with the same answers as the SQLite store.

    Every Deferred it returns has already fired. Knobs for tests:

    - ``fail_next``: the next ``accept`` fails with this exception (then it is cleared);
    - ``full``: every ``accept`` of a new message fails with :class:`QueueFullError`;
    - ``messages``: what was accepted, by id (read it, or seed it);
    - :meth:`update_recipient`: play the delivery side to test status rendering;
    - ``suppressions``: each client's suppression list, by (client, address), checked
      by ``accept`` as the SQLite store checks it; ``events``: the events stored of
      those the fake makes (``message.suppressed`` at acceptance, and an operator's
      bounce or delete; delivery results bring their own, ``recorded_events``), every
      client counting as subscribed to every type;
    - damage at rest: replace a message in ``messages`` or ``inbound`` with one whose
      ``data`` differs from what was accepted (``attrs.evolve``; ``data`` may even be a
      ``str`` or None): the next claim that reads it quarantines it, as the SQLite store
      does with a row that fails its size or ``sha256`` check.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.fail_next: Exception | None = None
        self.full = False
        self.closed = False
        self.messages: dict[str, NewMessage] = {}
        self._recipients: dict[str, list[RecipientStatus]] = {}
        self._idempotency: dict[tuple[str, str], _Remembered] = {}
        self._remote_mta: dict[tuple[str, int], str | None] = {}
        self._observers: list[Callable[[], object]] = []
        self.inbound: dict[str, InboundMessage] = {}
        self._hooks: dict[str, list[_Hook]] = {}
        self._inbound_observers: list[Callable[[list[WebhookJob]], object]] = []
        self._quarantine_observers: list[Callable[[Quarantined], object]] = []
        # (size, sha256 hex) of what was accepted, by id: what a claim checks the data against.
        self._stored: dict[str, tuple[int, bytes]] = {}
        self._inbound_stored: dict[str, tuple[int, bytes]] = {}
        self.held: dict[str, float] = {}
        self.actions: dict[str, list[AdminAction]] = {}
        self.history: dict[str, list[Attempt]] = {}
        # Events recorded with delivery results (rail.events.model.Event values), in order.
        self.recorded_events: list[object] = []
        # Retention: when each message's bytes were dropped, by (queue, id).
        self._body_purged: dict[tuple[str, str], float] = {}
        self._purged_before = float("-inf")
        self.suppressions: dict[tuple[str, str], Suppression] = {}
        self.events: list[Event] = []

    def accept(
        self, message: NewMessage, idempotency: IdempotencyKey | None = None
    ) -> Deferred[Accepted | Replayed | Conflict]:
        """Store ``message`` in memory, honouring ``idempotency`` like the SQLite store:
        a replay or conflict is answered even when the queue is full."""
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            return fail(error)
        if self.closed:
            return fail(StoreUnavailableError("store closed"))
        if idempotency is not None:
            seen = self._idempotency.get((message.client, idempotency.key))
            if seen is not None and seen.created_at >= message.received_at - IDEMPOTENCY_TTL:
                if seen.fingerprint == idempotency.fingerprint:
                    return succeed(Replayed(seen.message_id, seen.recipients, seen.suppressed))
                return succeed(Conflict(seen.message_id))
        if self.full:
            return fail(QueueFullError("queue full"))
        if message.id in self.messages:
            return fail(StoreUnavailableError(f"message {message.id} already stored"))
        self.messages[message.id] = message
        self._stored[message.id] = _fingerprint(message.data)
        rows = _fresh_rows(message)
        answer: list[SuppressedRecipient] = []
        for index, address in enumerate(message.recipients):
            entry = self.suppressions.get((message.client, normalize(address)))
            if entry is None:
                continue
            rows[index] = suppressed_row(address, entry.reason, message.received_at)
            answer.append(SuppressedRecipient(address, entry.reason))
            self.events.append(suppressed_event(message, address, entry))
        self._recipients[message.id] = rows
        if idempotency is not None:
            self._idempotency[(message.client, idempotency.key)] = _Remembered(
                fingerprint=idempotency.fingerprint,
                message_id=message.id,
                recipients=len(message.recipients),
                created_at=message.received_at,
                suppressed=tuple(answer),
            )
        if len(answer) < len(message.recipients):
            self._notify()
        return succeed(Accepted(message.id, len(message.recipients), tuple(answer)))

    def accept_many(
        self, items: Sequence[tuple[NewMessage, IdempotencyKey | None]]
    ) -> Deferred[list[object]]:
        """Each item as :meth:`accept` answers it, a refusal as its exception."""
        if self.closed:
            return fail(StoreUnavailableError("store closed"))
        results: list[object] = []
        for message, key in items:
            outcome = self.accept(message, key)
            outcome.addErrback(lambda failure: failure.value)
            results.append(self._fired(outcome))
        return succeed(results)

    @staticmethod
    def _fired(deferred: Deferred[Any]) -> object:
        box: list[object] = []
        deferred.addBoth(box.append)
        return box[0]

    def status(self, client: str, message_id: str) -> Deferred[MessageStatus | None]:
        """The status of ``message_id`` if ``client`` owns it, else None."""
        message = self.messages.get(message_id)
        if message is None or message.client != client:
            return succeed(None)
        recipients = tuple(self._rows(message))
        return succeed(
            MessageStatus(
                id=message.id,
                client=message.client,
                sender=message.sender,
                channel=message.channel,
                size=self._stored.get(message.id, (len(message.data), b""))[0],
                received_at=message.received_at,
                status=overall_status(tuple(r.status for r in recipients)),
                recipients=recipients,
                reason=next((r.last_reply for r in recipients if r.status == "failed"), None),
                body_purged_at=self._body_purged.get(("outbound", message.id)),
                meta=message.meta,
            )
        )

    def _rows(self, message: NewMessage) -> list[RecipientStatus]:
        # A test may seed ``messages`` directly: its recipients start queued.
        return self._recipients.setdefault(message.id, _fresh_rows(message))

    def close(self) -> Deferred[None]:
        """Nothing to release; later accepts fail as they would on a closed SQLite store."""
        self.closed = True
        return succeed(None)

    def claim(
        self, now: float, limit: int, exclude: frozenset[tuple[str, str]]
    ) -> Deferred[list[DeliveryJob]]:
        """Due jobs, oldest due first, as the SQLite store finds them; a message whose data
        is not what was accepted is quarantined instead."""
        due_ids = {
            message_id
            for message_id, rows in self._recipients.items()
            if any(
                row.status in ("queued", "deferred")
                and row.next_attempt_at is not None
                and row.next_attempt_at <= now
                for row in rows
            )
        }
        for message_id in sorted(due_ids):
            problem = _problem(self.messages[message_id].data, self._stored.get(message_id))
            if problem is not None:
                self._quarantine_now("outbound", message_id, "corrupt", problem, now)
        due = sorted(
            (row.next_attempt_at, message_id, index)
            for message_id, rows in self._recipients.items()
            for index, row in enumerate(rows)
            if row.status in ("queued", "deferred")
            and row.next_attempt_at is not None
            and row.next_attempt_at <= now
        )
        grouped: dict[tuple[str, str], list[DueRecipient]] = {}
        for _, message_id, index in due:
            row = self._recipients[message_id][index]
            key = (message_id, recipient_domain(row.address))
            if key in exclude or (key not in grouped and len(grouped) >= limit):
                continue
            grouped.setdefault(key, []).append(
                DueRecipient(index, row.address, row.attempts, row.last_reply)
            )
        jobs = []
        for (message_id, domain), recipients in grouped.items():
            message = self.messages[message_id]
            jobs.append(
                DeliveryJob(
                    message_id=message_id,
                    domain=domain,
                    client=message.client,
                    sender=message.sender,
                    received_at=message.received_at,
                    smtputf8=message.smtputf8,
                    eight_bit=message.eight_bit,
                    recipients=tuple(sorted(recipients, key=lambda r: r.idx)),
                    data=message.data,
                )
            )
        return succeed(jobs)

    def record(
        self, result: JobResult, dsn: DSNBuilder | None = None
    ) -> Deferred[NewMessage | None]:
        """Apply ``result`` like the SQLite store, including the DSN hand-over."""
        if self.closed:
            return fail(StoreUnavailableError("store closed"))
        message_id = result.message_id
        rows = self._rows(self.messages[message_id])
        self.recorded_events.extend(result.events)
        bounced: list[int] = []
        for update in result.updates:
            old = rows[update.idx]
            if old.status not in ("queued", "deferred"):
                continue
            if update.status == "bounced":
                bounced.append(update.idx)
            rows[update.idx] = attrs.evolve(
                old,
                status=update.status,
                attempts=old.attempts + 1,
                last_reply=update.reply,
                # A message held while this attempt was in flight stays held.
                next_attempt_at=update.next_attempt_at
                if update.status == "deferred" and message_id not in self.held
                else None,
                updated_at=result.attempted_at,
            )
            self._remote_mta[(message_id, update.idx)] = update.remote_mta
            self.history.setdefault(message_id, []).append(
                Attempt(
                    update.idx,
                    result.attempted_at,
                    update.status,
                    update.reply,
                    update.remote_mta,
                )
            )
        return succeed(self._bounce_notification(message_id, dsn, bounced) if bounced else None)

    def _bounce_notification(
        self, message_id: str, dsn: DSNBuilder | None, indexes: list[int]
    ) -> NewMessage | None:
        """The DSN of the recipients ``indexes`` that just bounced, queued, or None."""
        rows = self._rows(self.messages[message_id])
        bounced = tuple(
            BouncedRecipient(
                row.address,
                row.last_reply or "",
                self._remote_mta.get((message_id, index)),
                row.updated_at,
            )
            for index, row in enumerate(rows)
            if row.status == "bounced" and index in indexes
        )
        if not bounced or dsn is None:
            return None
        message = self.messages[message_id]
        notification = dsn(
            BounceReport(
                message_id,
                message.client,
                message.sender,
                message.received_at,
                message.data,
                bounced,
            )
        )
        if notification is not None:
            self.messages[notification.id] = notification
            self._recipients[notification.id] = _fresh_rows(notification)
            self._notify()
        return notification

    def quarantine(
        self, message_id: str, kind: QuarantineKind, reason: str, now: float
    ) -> Deferred[bool]:
        """Fail every pending recipient of ``message_id``, as the SQLite store does."""
        if self.closed:
            return fail(StoreUnavailableError("store closed"))
        return succeed(self._quarantine_now("outbound", message_id, kind, reason, now))

    def quarantine_inbound(
        self, message_id: str, kind: QuarantineKind, reason: str, now: float
    ) -> Deferred[bool]:
        """Fail every pending webhook job of ``message_id``, as the SQLite store does."""
        if self.closed:
            return fail(StoreUnavailableError("store closed"))
        return succeed(self._quarantine_now("inbound", message_id, kind, reason, now))

    def observe_quarantined(self, callback: Callable[[Quarantined], object]) -> None:
        """Call ``callback(Quarantined)`` once per quarantined message."""
        self._quarantine_observers.append(callback)

    def _quarantine_now(
        self,
        queue: str,
        message_id: str,
        kind: QuarantineKind,
        reason: str,
        now: float,
    ) -> bool:
        changed = False
        reply = QUARANTINE_PREFIX + reason
        if queue == "outbound":
            rows = self._recipients.get(message_id, [])
            ended = [
                index for index, row in enumerate(rows) if row.status in ("queued", "deferred")
            ]
            for index in ended:
                rows[index] = attrs.evolve(
                    rows[index],
                    status="failed",
                    last_reply=reply,
                    next_attempt_at=None,
                    updated_at=now,
                )
            changed = bool(ended)
            message = self.messages.get(message_id)
            event = failed_event(kind, reason)
            if event is not None and message is not None and message.sender:
                self.events.extend(  # as the stores tell (rail.store.emit.failed_events)
                    Event(event[0], message.client, message_id, message.recipients[index], event[1])
                    for index in ended
                )
            record = Quarantined("outbound", message_id, kind, reason)
        else:
            for hook in self._hooks.get(message_id, []):
                if hook.status in ("queued", "deferred"):
                    hook.status = "failed"
                    hook.last_reply = reply
                    hook.next_attempt_at = None
                    hook.updated_at = now
                    changed = True
            record = Quarantined("inbound", message_id, kind, reason)
        if changed:
            for observer in self._quarantine_observers:
                observer(record)
        return changed

    def recipient_counts(self) -> Deferred[dict[str, int]]:
        """Recipients by status, every status present."""
        counts = dict.fromkeys(("queued", "deferred", "sent", "bounced", "failed", "deleted"), 0)
        for message in self.messages.values():
            for row in self._rows(message):
                # As in the SQLite store, whose tally counts the recipients table: a
                # suppressed recipient is not in it (rail.store.sendcheck).
                if row.status != "suppressed":
                    counts[row.status] += 1
        return succeed(counts)

    def oldest_pending_received_at(self) -> Deferred[float | None]:
        """When the oldest message with a pending recipient was received, or None."""
        pending = [
            message.received_at
            for message in self.messages.values()
            if _pending(self._rows(message))
        ]
        return succeed(min(pending, default=None))

    # IRetention

    def purge(
        self, now: float, body_before: float, record_before: float, limit: int
    ) -> Deferred[Purged]:
        """One retention step, as the SQLite store takes it (no pages to give back)."""
        if self.closed:
            return fail(StoreUnavailableError("store closed"))
        finished = sorted((when, queue, mid) for queue, mid, when in self._finished())
        records = [(queue, mid) for when, queue, mid in finished if when < record_before][:limit]
        for queue, mid in records:
            self._forget(queue, mid)
        bodies = [
            (queue, mid)
            for when, queue, mid in finished
            if when < body_before
            and (queue, mid) not in self._body_purged
            and (queue, mid) not in records
        ][:limit]
        for queue, mid in bodies:
            if queue == "outbound":
                self.messages[mid] = attrs.evolve(self.messages[mid], data=b"")
            else:
                self.inbound[mid] = attrs.evolve(self.inbound[mid], data=b"")
            self._body_purged[(queue, mid)] = now
        expired = sorted(
            (seen.created_at, key)
            for key, seen in self._idempotency.items()
            if seen.created_at < now - IDEMPOTENCY_TTL
        )[:limit]
        for _, key in expired:
            del self._idempotency[key]
        self._purged_before = max(self._purged_before, record_before)
        more = limit in (len(records), len(bodies), len(expired))
        return succeed(Purged(len(bodies), len(records), len(expired), 0, more))

    def expired(self, message_id: str) -> bool:
        """Whether ``message_id`` is older than the records purged so far."""
        made = id_time(message_id)
        return made is not None and made < self._purged_before

    def _finished(self) -> list[tuple[str, str, float]]:
        """(queue, id, finished at) of every message nothing more will be done with."""
        done: list[tuple[str, str, float]] = []
        for message in self.messages.values():
            rows = self._rows(message)
            if rows and not _pending(rows):
                done.append(("outbound", message.id, max(row.updated_at for row in rows)))
        for message_id, hooks in self._hooks.items():
            if not any(hook.status in ("queued", "deferred") for hook in hooks):
                when = max((hook.updated_at for hook in hooks), default=0.0)
                done.append(("inbound", message_id, when or self.inbound[message_id].received_at))
        return done

    def _forget(self, queue: str, message_id: str) -> None:
        self._body_purged.pop((queue, message_id), None)
        if queue == "outbound":
            rows = self._recipients.pop(message_id, [])
            for index in range(len(rows)):
                self._remote_mta.pop((message_id, index), None)
            del self.messages[message_id]
            self._stored.pop(message_id, None)
            # The admin records go with the message, as ON DELETE CASCADE does in SQLite.
            self.held.pop(message_id, None)
            self.actions.pop(message_id, None)
            self.history.pop(message_id, None)
        else:
            del self._hooks[message_id]
            del self.inbound[message_id]
            self._inbound_stored.pop(message_id, None)

    def observe_accepted(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` after every accept and every queued DSN."""
        self._observers.append(callback)

    def _notify(self) -> None:
        for observer in self._observers:
            observer()

    def update_recipient(
        self,
        message_id: str,
        index: int,
        *,
        status: RecipientState,
        attempts: int | None = None,
        last_reply: str | None = None,
        next_attempt_at: float | None = None,
    ) -> None:
        """Set recipient ``index`` of ``message_id`` as delivery would (``updated_at`` comes
        from the clock; ``attempts`` defaults to one more than before)."""
        rows = self._rows(self.messages[message_id])
        old = rows[index]
        rows[index] = attrs.evolve(
            old,
            status=status,
            attempts=old.attempts + 1 if attempts is None else attempts,
            last_reply=last_reply,
            next_attempt_at=next_attempt_at,
            updated_at=self.clock.seconds(),
        )

    # IInboundStore

    def accept_inbound(self, message: InboundMessage) -> Deferred[Accepted]:
        """Spool ``message`` with one queued webhook job per target."""
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            return fail(error)
        if self.closed:
            return fail(StoreUnavailableError("store closed"))
        if self.full:
            return fail(QueueFullError("queue full"))
        if message.id in self.inbound:
            return fail(StoreUnavailableError(f"message {message.id} already stored"))
        self.inbound[message.id] = message
        self._inbound_stored[message.id] = _fingerprint(message.data)
        self._hooks[message.id] = [
            _Hook(
                client=target.client,
                url=target.url,
                recipients=target.recipients,
                status="queued",
                attempts=0,
                next_attempt_at=message.received_at,
                last_reply=None,
                updated_at=message.received_at,
            )
            for target in message.targets
        ]
        for forward in message.forwards:  # queued with the message, as the SQLite store does
            self.messages[forward.id] = forward
            self._stored[forward.id] = _fingerprint(forward.data)
            self._recipients[forward.id] = _fresh_rows(forward)
        if message.forwards:
            self._notify()
        jobs = new_jobs(message)
        for observer in self._inbound_observers:
            observer(jobs)
        return succeed(Accepted(message.id, len(message.targets)))

    def claim_webhooks(
        self, now: float, limit: int, exclude: frozenset[tuple[str, str]]
    ) -> Deferred[list[WebhookJob]]:
        """Due webhook jobs, oldest due first, as the SQLite store finds them; an inbound
        message whose data is not what was accepted is quarantined instead."""
        for message_id, hooks in sorted(self._hooks.items()):
            if any(
                hook.status in ("queued", "deferred")
                and hook.next_attempt_at is not None
                and hook.next_attempt_at <= now
                for hook in hooks
            ):
                stored = self._inbound_stored.get(message_id)
                problem = _problem(self.inbound[message_id].data, stored)
                if problem is not None:
                    self._quarantine_now("inbound", message_id, "corrupt", problem, now)
        due = sorted(
            (hook.next_attempt_at, message_id, index)
            for message_id, hooks in self._hooks.items()
            for index, hook in enumerate(hooks)
            if hook.status in ("queued", "deferred")
            and hook.next_attempt_at is not None
            and hook.next_attempt_at <= now
            and (message_id, hook.client) not in exclude
        )
        jobs = []
        for _, message_id, index in due[:limit]:
            hook = self._hooks[message_id][index]
            message = self.inbound[message_id]
            jobs.append(
                WebhookJob(
                    message_id=message_id,
                    client=hook.client,
                    url=hook.url,
                    recipients=hook.recipients,
                    sender=message.sender,
                    subject=message.subject,
                    received_at=message.received_at,
                    authentication=message.authentication,
                    bounce_allowed=message.bounce_allowed,
                    attempts=hook.attempts,
                    data=message.data,
                )
            )
        return succeed(jobs)

    def record_webhook(
        self, result: WebhookResult, dsn: DSNBuilder | None = None
    ) -> Deferred[NewMessage | None]:
        """Apply ``result`` like the SQLite store, including the DSN on failure."""
        if self.closed:
            return fail(StoreUnavailableError("store closed"))
        message = self.inbound[result.message_id]
        hook = next(h for h in self._hooks[result.message_id] if h.client == result.client)
        if hook.status not in ("queued", "deferred"):
            return succeed(None)
        hook.status = result.status
        hook.attempts += 1
        hook.last_reply = result.reply
        hook.next_attempt_at = result.next_attempt_at if result.status == "deferred" else None
        hook.updated_at = result.attempted_at
        if result.status != "failed" or dsn is None or not message.bounce_allowed:
            return succeed(None)
        notification = dsn(
            BounceReport(
                message.id,
                hook.client,
                message.sender,
                message.received_at,
                message.data,
                tuple(
                    BouncedRecipient(address, result.reply, None, result.attempted_at)
                    for address in hook.recipients
                ),
            )
        )
        if notification is not None:
            self.messages[notification.id] = notification
            self._recipients[notification.id] = _fresh_rows(notification)
            self._notify()
        return succeed(notification)

    def inbound_status(self, client: str, message_id: str) -> Deferred[InboundStatus | None]:
        """``client``'s view of inbound ``message_id``, or None."""
        message = self.inbound.get(message_id)
        hooks = [h for h in self._hooks.get(message_id, []) if h.client == client]
        if message is None or not hooks:
            return succeed(None)
        hook = hooks[0]
        return succeed(
            InboundStatus(
                id=message.id,
                client=client,
                sender=message.sender,
                recipients=hook.recipients,
                subject=message.subject,
                size=self._inbound_stored.get(message.id, (len(message.data), b""))[0],
                received_at=message.received_at,
                status=hook.status,
                attempts=hook.attempts,
                last_reply=hook.last_reply,
                next_attempt_at=hook.next_attempt_at,
                updated_at=hook.updated_at,
                authentication=message.authentication,
                body_purged_at=self._body_purged.get(("inbound", message.id)),
            )
        )

    def webhook_counts(self) -> Deferred[dict[str, int]]:
        """Webhook jobs by status, every status present."""
        counts = dict.fromkeys(("queued", "deferred", "delivered", "failed"), 0)
        for hooks in self._hooks.values():
            for hook in hooks:
                counts[hook.status] += 1
        return succeed(counts)

    def observe_inbound(self, callback: Callable[[list[WebhookJob]], object]) -> None:
        """Call ``callback(jobs)`` after every accepted inbound message."""
        self._inbound_observers.append(callback)


def _fingerprint(data: bytes) -> tuple[int, bytes]:
    return len(data), hashlib.sha256(data).hexdigest().encode()


def _problem(data: object, stored: tuple[int, bytes] | None) -> str | None:
    """What the SQLite store's check would say of ``data`` (None for a seeded message,
    whose accepted form is unknown)."""
    if stored is None:
        return None
    if data is None:
        kind = "null"
    elif isinstance(data, bytes):
        kind = "blob"
    else:
        kind = "text" if isinstance(data, str) else type(data).__name__
    return data_problem(kind, data, *stored)


def _pending(rows: list[RecipientStatus]) -> bool:
    return any(row.status in ("queued", "deferred") for row in rows)


def _fresh_rows(message: NewMessage) -> list[RecipientStatus]:
    return [
        RecipientStatus(
            address=address,
            status="queued",
            attempts=0,
            last_reply=None,
            next_attempt_at=message.received_at,
            updated_at=message.received_at,
        )
        for address in message.recipients
    ]
