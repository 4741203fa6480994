""":class:`IAdminQueue` for :class:`rail.testing.MemoryStore`: the same answers as the
SQLite store's (:mod:`rail.store.admin`), checked by the same contract tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed

from rail.events.model import Event
from rail.store.adminmodel import (
    HEAD_BYTES,
    MAX_PAGE,
    SCAN_BUDGET,
    AdminAction,
    AdminOutcome,
    Attempt,
    MessageDetail,
    MessageSummary,
    Page,
    QueueQuery,
    RetryTarget,
)
from rail.store.deliveries import DSNBuilder, recipient_domain
from rail.store.emit import operator_event
from rail.store.model import (
    MessageStatus,
    NewMessage,
    RecipientState,
    RecipientStatus,
    overall_status,
)

__all__ = ["MemoryAdmin"]

_PENDING = ("queued", "deferred")


class MemoryAdmin:
    """Mixed into MemoryStore, whose ``messages``, ``_recipients``, ``_remote_mta``,
    ``_idempotency``, ``_stored``, ``_body_purged``, ``_rows`` and ``_notify`` it uses;
    ``held``, ``actions`` and ``history`` (which MemoryStore.record appends to) are by
    message id."""

    messages: dict[str, NewMessage]
    _recipients: dict[str, list[RecipientStatus]]
    _remote_mta: dict[tuple[str, int], str | None]
    _idempotency: dict[tuple[str, str], Any]
    _stored: dict[str, tuple[int, bytes]]
    _body_purged: dict[tuple[str, str], float]
    held: dict[str, float]
    actions: dict[str, list[AdminAction]]
    history: dict[str, list[Attempt]]
    events: list[Event]

    def _rows(self, message: NewMessage) -> list[RecipientStatus]:
        raise NotImplementedError

    def _notify(self) -> None:
        raise NotImplementedError

    def _is_held(self, message_id: str) -> bool:
        """On hold with recipients still pending, as :func:`rail.store.admin._held`."""
        rows = self._rows(self.messages[message_id])
        return message_id in self.held and any(r.status in _PENDING for r in rows)

    def _status_of(self, message_id: str) -> str:
        status = overall_status(tuple(r.status for r in self._rows(self.messages[message_id])))
        if status in _PENDING and self._is_held(message_id):
            return "held"
        return status

    def _matches(self, message: NewMessage, query: QueueQuery) -> bool:
        rows = self._rows(message)
        if query.older_than is not None and not message.received_at < query.older_than:
            return False
        if query.newer_than is not None and not message.received_at >= query.newer_than:
            return False
        if query.status == "held" and not self._is_held(message.id):
            return False
        if query.status not in (None, "held"):
            if not any(r.status == query.status for r in rows):
                return False
            if query.status in _PENDING and message.id in self.held:
                return False
        if query.domain is not None and not any(
            recipient_domain(r.address) == query.domain.lower() for r in rows
        ):
            return False
        if query.tag is not None and message.meta.tag != query.tag:
            return False
        if query.sender is not None and message.sender != query.sender:
            return False
        if query.tag is not None and query.request_id is not None:
            if message.meta.request_id != query.request_id:
                return False
        metadata = message.meta.metadata
        if any(metadata.get(key) != value for key, value in query.metadata):
            return False
        return query.recipient is None or any(r.address == query.recipient for r in rows)

    def list_messages(self, query: QueueQuery) -> Deferred[Page]:
        """A page, by the rules of :func:`rail.store.admin.list_messages`."""
        limit = max(1, min(query.limit, MAX_PAGE))
        window = sorted(
            (
                m
                for m in self.messages.values()
                if (query.client is None or m.client == query.client)
                and (query.cursor is None or m.id < query.cursor)
            ),
            key=lambda m: m.id,
            reverse=True,
        )
        if query.tag is not None or query.request_id is not None:
            # As the SQLite store's meta indexes find them: any client's, then filtered.
            every = sorted(self.messages.values(), key=lambda m: m.id, reverse=True)
            if query.tag is not None:
                window = [
                    m
                    for m in every
                    if m.meta.tag == query.tag and (query.cursor is None or m.id < query.cursor)
                ][:SCAN_BUDGET]
            else:
                window = [
                    m
                    for m in every
                    if m.meta.request_id == query.request_id
                    and (query.cursor is None or m.id < query.cursor)
                ][:SCAN_BUDGET]
                seen = self._idempotency.get((query.client or "", query.request_id or ""))
                if seen is not None and seen.message_id in self.messages:
                    if query.cursor is None or seen.message_id < query.cursor:
                        if all(m.id != seen.message_id for m in window):
                            window.append(self.messages[seen.message_id])
            if not window:
                return succeed(Page((), None))
            boundary = min(m.id for m in window) if len(window) >= SCAN_BUDGET else None
            window = sorted(
                (m for m in window if query.client is None or m.client == query.client),
                key=lambda m: m.id,
                reverse=True,
            )
        else:
            window = window[:SCAN_BUDGET]
            boundary = window[-1].id if len(window) == SCAN_BUDGET else None
        found = [m for m in window if self._matches(m, query)][:limit]
        summaries = tuple(
            MessageSummary(
                id=m.id,
                client=m.client,
                sender=m.sender,
                received_at=m.received_at,
                size=len(m.data),
                status=self._status_of(m.id),
                recipients=tuple(r.address for r in self._rows(m)),
                meta=m.meta,
            )
            for m in found
        )
        if len(summaries) == limit:
            return succeed(Page(summaries, summaries[-1].id))
        return succeed(Page(summaries, boundary))

    def show_message(self, message_id: str) -> Deferred[MessageDetail | None]:
        """Everything kept about ``message_id``, or None."""
        message = self.messages.get(message_id)
        if message is None:
            return succeed(None)
        rows = tuple(self._rows(message))
        return succeed(
            MessageDetail(
                status=MessageStatus(
                    id=message.id,
                    client=message.client,
                    sender=message.sender,
                    channel=message.channel,
                    size=self._stored.get(message.id, (len(message.data), b""))[0],
                    received_at=message.received_at,
                    status=overall_status(tuple(r.status for r in rows)),
                    recipients=rows,
                    reason=next((r.last_reply for r in rows if r.status == "failed"), None),
                    body_purged_at=self._body_purged.get(("outbound", message.id)),
                    meta=message.meta,
                ),
                held=self._is_held(message_id),
                head=message.data[:HEAD_BYTES],
                remote_mta=tuple(self._remote_mta.get((message_id, i)) for i in range(len(rows))),
                actions=tuple(self.actions.get(message_id, ())),
                history=tuple(
                    sorted(self.history.get(message_id, ()), key=lambda a: (a.idx, a.at))
                ),
            )
        )

    def _act(
        self, message_id: str, now: float, actor: str, action: str, reason: str | None
    ) -> None:
        self.actions.setdefault(message_id, []).append(AdminAction(now, actor, action, reason))

    def _set_pending(
        self, message_id: str, change: Callable[[RecipientStatus], RecipientStatus]
    ) -> int:
        rows = self._rows(self.messages[message_id])
        count = 0
        for index, row in enumerate(rows):
            if row.status in _PENDING:
                new = change(row)
                if new != row:
                    count += 1
                rows[index] = new
        return count

    def retry(self, target: RetryTarget, now: float, actor: str) -> Deferred[int | None]:
        """Pending recipients waiting past ``now`` become due (held ones stay)."""
        if target.message_id is not None and target.message_id not in self.messages:
            return succeed(None)
        count = 0
        for message_id, rows in self._recipients.items():
            if target.message_id is not None and message_id != target.message_id:
                continue
            for index, row in enumerate(rows):
                if (
                    row.status in _PENDING
                    and row.next_attempt_at is not None
                    and row.next_attempt_at > now
                    and (
                        target.domain is None
                        or recipient_domain(row.address) == target.domain.lower()
                    )
                ):
                    rows[index] = attrs.evolve(row, next_attempt_at=now)
                    count += 1
        if target.message_id is not None and count:
            self._act(target.message_id, now, actor, "retry", None)
        if count:
            self._notify()
        return succeed(count)

    def hold(
        self, message_id: str, now: float, actor: str, reason: str | None
    ) -> Deferred[AdminOutcome]:
        """Keep ``message_id`` from every claim until released."""
        if message_id not in self.messages:
            return succeed("not_found")
        if self._is_held(message_id):
            return succeed("already_held")
        rows = self._rows(self.messages[message_id])
        if not any(r.status in _PENDING for r in rows):
            return succeed("not_pending")
        self._set_pending(message_id, lambda r: attrs.evolve(r, next_attempt_at=None))
        self.held[message_id] = now
        self._act(message_id, now, actor, "hold", reason)
        return succeed("done")

    def release(self, message_id: str, now: float, actor: str) -> Deferred[AdminOutcome]:
        """Lift the hold; pending recipients are due at ``now``."""
        if message_id not in self.messages:
            return succeed("not_found")
        if not self._is_held(message_id):
            return succeed("not_held")
        del self.held[message_id]
        self._set_pending(message_id, lambda r: attrs.evolve(r, next_attempt_at=now))
        self._act(message_id, now, actor, "release", None)
        self._notify()
        return succeed("done")

    def delete(
        self, message_id: str, now: float, actor: str, reason: str
    ) -> Deferred[AdminOutcome]:
        """Pending recipients become ``deleted``; no DSN."""
        outcome, _ = self._finish(message_id, now, actor, "delete", reason, None)
        return succeed(outcome)

    def bounce(
        self, message_id: str, now: float, actor: str, reason: str | None, dsn: DSNBuilder | None
    ) -> Deferred[AdminOutcome]:
        """Pending recipients become ``bounced``; the DSN is queued."""
        outcome, _ = self._finish(message_id, now, actor, "bounce", reason, dsn)
        return succeed(outcome)

    def _finish(
        self,
        message_id: str,
        now: float,
        actor: str,
        action: str,
        reason: str | None,
        dsn: DSNBuilder | None,
    ) -> tuple[AdminOutcome, NewMessage | None]:
        if message_id not in self.messages:
            return "not_found", None
        rows = self._rows(self.messages[message_id])
        if not any(r.status in _PENDING for r in rows):
            return "not_pending", None
        status: RecipientState
        if action == "delete":
            status, reply = "deleted", f"deleted by {actor}: {reason}"
        else:
            status = "bounced"
            reply = f"550 5.0.0 bounced by the operator ({actor})" + (
                f": {reason}" if reason else ""
            )
        pending = [index for index, row in enumerate(rows) if row.status in _PENDING]
        for index, row in enumerate(rows):
            if row.status in _PENDING:
                rows[index] = attrs.evolve(
                    row, status=status, last_reply=reply, next_attempt_at=None, updated_at=now
                )
                self._remote_mta[(message_id, index)] = None
        self.held.pop(message_id, None)
        self._act(message_id, now, actor, action, reason)
        message = self.messages[message_id]
        if message.sender:  # as the SQLite store tells (rail.store.emit.operator_events)
            kind, details = operator_event(action, reply, reason)
            self.events.extend(
                Event(kind, message.client, message_id, message.recipients[index], details)
                for index in pending
            )
        if action != "bounce":
            return "done", None
        return "done", self._bounce_notification(message_id, dsn, pending)

    def _bounce_notification(
        self, message_id: str, dsn: DSNBuilder | None, indexes: list[int]
    ) -> NewMessage | None:
        raise NotImplementedError
