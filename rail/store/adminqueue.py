""":class:`IAdminQueue` for the SQLite store: reads on its read thread, actions on its writer.

A mixin of :class:`rail.store.queuestore.QueueStore`, kept apart so the queue's admin
surface reads in one place. Reads (list, show) run on the read thread like status reads
(on the writer, after its commit, when there is no read thread), so a listing never
delays an acceptance; actions run inside the writer's batch transaction. After an action
that makes mail due (retry, release, a bounce's DSN) the store's accept observers are
called, so the scheduler claims at once instead of at its next poll.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from rail.events.subscriptions import Subscriptions
from rail.store import admin
from rail.store.adminmodel import QueueQuery, RetryTarget
from rail.store.deliveries import DSNBuilder
from rail.store.inboundlist import recent_inbound, retry_inbound
from rail.store.ops import AdminOp
from rail.store.trail import deferring_domains, message_events, webhook_backlog

__all__ = ["SQLiteAdmin"]


class SQLiteAdmin:
    """Needs ``_submit(make) -> Deferred``, ``_read(read) -> Deferred``, ``_observers``
    and ``subscriptions`` from the store."""

    _observers: list[Callable[[], object]]
    subscriptions: Subscriptions

    def _submit(self, make: Callable[[Any], Any]) -> Deferred[Any]:
        raise NotImplementedError

    def _read(self, read: Callable[[Any], Any]) -> Deferred[Any]:
        raise NotImplementedError

    def _run(
        self,
        work: Callable[[Any], tuple[object, int]],
        write: bool,
        message_id: str | None = None,
        inbound_id: str | None = None,
    ) -> Deferred[Any]:
        """``message_id``, ``inbound_id``: the outbound or inbound message a write changes,
        if one (its row is locked in the batch's order:
        :attr:`rail.store.ops.AdminOp.message_id`)."""
        return self._submit(lambda token: AdminOp(work, write, token, message_id, inbound_id))

    def _woken(self, result: Any, wake: bool) -> Any:
        if wake:
            for observer in self._observers:
                observer()
        return result

    def list_messages(self, query: QueueQuery) -> Deferred[Any]:
        """A :class:`~rail.store.adminmodel.Page`; see IAdminQueue."""
        return self._read(lambda c: admin.list_messages(c, query))

    def show_message(self, message_id: str) -> Deferred[Any]:
        """A :class:`~rail.store.adminmodel.MessageDetail` or None; see IAdminQueue."""
        return self._read(lambda c: admin.show_message(c, message_id))

    def message_events(self, message_id: str) -> Deferred[Any]:
        """The :class:`~rail.store.trail.EventRecord` tuple of ``message_id`` (the
        console's trail), read on the read thread."""
        return self._read(lambda c: message_events(c, message_id))

    def deferring_domains(self) -> Deferred[Any]:
        """The :class:`~rail.store.trail.DeferringDomain` tuple of the console's overview,
        read on the read thread."""
        return self._read(deferring_domains)

    def webhook_backlog(self) -> Deferred[Any]:
        """The console's :class:`~rail.store.trail.Backlog`, read on the read thread."""
        return self._read(webhook_backlog)

    def recent_inbound(self, before: str | None = None) -> Deferred[Any]:
        """The console's Inbound page: :func:`rail.store.inboundlist.recent_inbound`,
        read on the read thread."""
        return self._read(lambda c: recent_inbound(c, before))

    def retry_inbound(self, message_id: str, now: float) -> Deferred[Any]:
        """Make ``message_id``'s pending webhook jobs due at ``now`` (writer thread);
        fires with how many were."""
        return self._run(
            lambda c: (retry_inbound(c, message_id, now), 0), write=True, inbound_id=message_id
        )

    def retry(self, target: RetryTarget, now: float, actor: str) -> Deferred[Any]:
        """How many recipients were made due (None: no such message)."""
        done = self._run(
            lambda c: admin.retry(c, target, now, actor), write=True, message_id=target.message_id
        )
        return done.addCallback(lambda count: self._woken(count, bool(count)))

    def hold(self, message_id: str, now: float, actor: str, reason: str | None) -> Deferred[Any]:
        """An AdminOutcome; see IAdminQueue."""
        return self._run(
            lambda c: admin.hold(c, message_id, now, actor, reason),
            write=True,
            message_id=message_id,
        )

    def release(self, message_id: str, now: float, actor: str) -> Deferred[Any]:
        """An AdminOutcome; see IAdminQueue."""
        done = self._run(
            lambda c: admin.release(c, message_id, now, actor), write=True, message_id=message_id
        )
        return done.addCallback(lambda outcome: self._woken(outcome, outcome == "done"))

    def delete(self, message_id: str, now: float, actor: str, reason: str) -> Deferred[Any]:
        """An AdminOutcome; see IAdminQueue."""
        wanted = self.subscriptions  # who hears of it: message.deleted
        done = self._run(
            lambda c: admin.delete(c, message_id, now, actor, reason, wanted),
            write=True,
            message_id=message_id,
        )
        return done.addCallback(lambda result: result[0])

    def bounce(
        self, message_id: str, now: float, actor: str, reason: str | None, dsn: DSNBuilder | None
    ) -> Deferred[Any]:
        """An AdminOutcome; see IAdminQueue."""
        wanted = self.subscriptions  # who hears of it: message.bounced
        done = self._run(
            lambda c: admin.bounce(c, message_id, now, actor, reason, dsn, wanted),
            write=True,
            message_id=message_id,
        )
        return done.addCallback(lambda result: self._woken(result[0], result[1] is not None))
