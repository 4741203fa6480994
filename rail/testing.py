"""Public fakes for Rail's interfaces, each run against the same contract tests as the real thing.

Use these in tests of the code that sits on top of an interface (the HTTP API, SMTP intake)
so those tests need no threads, files or wall time.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from rail.store.model import (
    Accepted,
    Conflict,
    IdempotencyKey,
    IQueueStore,
    MessageStatus,
    NewMessage,
    QueueFullError,
    RecipientState,
    RecipientStatus,
    Replayed,
    StoreUnavailableError,
    overall_status,
)
from rail.store.writer import IDEMPOTENCY_TTL

__all__ = ["MemoryStore"]


@attrs.frozen
class _Remembered:
    fingerprint: str
    message_id: str
    recipients: int
    created_at: float


@implementer(IQueueStore)
class MemoryStore:
    """An in-memory :class:`IQueueStore` with the same answers as the SQLite store.

    Every Deferred it returns has already fired. Knobs for tests:

    - ``fail_next``: the next ``accept`` fails with this exception (then it is cleared);
    - ``full``: every ``accept`` of a new message fails with :class:`QueueFullError`;
    - ``messages``: what was accepted, by id (read it, or seed it);
    - :meth:`update_recipient`: play the delivery side to test status rendering.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.fail_next: Exception | None = None
        self.full = False
        self.closed = False
        self.messages: dict[str, NewMessage] = {}
        self._recipients: dict[str, list[RecipientStatus]] = {}
        self._idempotency: dict[tuple[str, str], _Remembered] = {}

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
                    return succeed(Replayed(seen.message_id, seen.recipients))
                return succeed(Conflict(seen.message_id))
        if self.full:
            return fail(QueueFullError("queue full"))
        if message.id in self.messages:
            return fail(StoreUnavailableError(f"message {message.id} already stored"))
        self.messages[message.id] = message
        self._recipients[message.id] = _fresh_rows(message)
        if idempotency is not None:
            self._idempotency[(message.client, idempotency.key)] = _Remembered(
                fingerprint=idempotency.fingerprint,
                message_id=message.id,
                recipients=len(message.recipients),
                created_at=message.received_at,
            )
        return succeed(Accepted(message.id, len(message.recipients)))

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
                size=len(message.data),
                received_at=message.received_at,
                status=overall_status(tuple(r.status for r in recipients)),
                recipients=recipients,
            )
        )

    def _rows(self, message: NewMessage) -> list[RecipientStatus]:
        # A test may seed ``messages`` directly: its recipients start queued.
        return self._recipients.setdefault(message.id, _fresh_rows(message))

    def close(self) -> Deferred[None]:
        """Nothing to release; later accepts fail as they would on a closed SQLite store."""
        self.closed = True
        return succeed(None)

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
