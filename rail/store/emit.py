"""What the store records beside an outcome: the events apps asked for, and suppressions.

These functions run on the writer thread inside the transaction that records the outcome
(an acceptance, a delivery attempt, an inbound webhook that gave up), so an event, and the
suppression a hard bounce makes, are on disk exactly when the outcome is: a crash keeps
both or neither. docs/events.md says when each type fires and what it carries; in short:

- ``message.accepted``: the message is queued (SMTP or API).
- ``message.delivered``: a recipient's attempt was answered 2xx.
- ``message.deferred``: a recipient's attempt failed temporarily. At most one per recipient
  per :data:`DEFERRED_WINDOW` (the first deferral always tells) and at most
  :data:`DEFERRED_PER_MESSAGE` per message in any such window; the others are not stored
  (the status API still shows every attempt).
- ``message.bounced``: a recipient failed for good, at once, whatever its siblings do:
  ``source`` ``smtp`` for a 5xx (RCPT, DATA, or Rail's own routing verdict such as a null
  MX), ``expired`` when it reached ``delivery.max_age``. A ``hard`` classification
  (:func:`rail.events.classify.classify`) lists the address on the client's suppression
  list in the same transaction; an expiry never does.
- ``message.expired``: a recipient reached ``delivery.max_age`` (with ``message.bounced``,
  ``source`` ``expired``, so an app that only follows bounces sees it too).
- ``inbound.failed``: an inbound webhook job gave up (a 4xx, a refused URL, or max age),
  or was quarantined because its POST could not be built (not for a damaged row).
- An operator's bounce of a message: ``message.bounced``, ``source`` ``operator``, for each
  recipient it ended (never suppressing: the address did nothing wrong); an operator's
  delete: ``message.deleted`` for each.
- ``message.failed``: the message was quarantined because it could not be prepared
  (``error``, ``timeout``), for each recipient that ended. A message quarantined because
  its stored row is damaged (``corrupt``) makes none: the row cannot be trusted to name
  its client.

Messages with a null reverse-path are Rail's own notifications (DSNs), not the app's: they
make no events and suppress nothing. Nothing is read unless a subscribed client or a
bounce needs it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from rail.events.classify import classify
from rail.events.model import Event
from rail.events.subscriptions import Subscriptions
from rail.inbound.model import WebhookResult
from rail.store import suppressions
from rail.store.db import Connection
from rail.store.events import insert_events
from rail.store.model import QUARANTINE_PREFIX, JobResult, NewMessage, RecipientUpdate

__all__ = [
    "DEFERRED_PER_MESSAGE",
    "DEFERRED_WINDOW",
    "EMISSION_SCHEMA",
    "accepted_events",
    "delivery_events",
    "failed_event",
    "failed_events",
    "gave_up_events",
    "inbound_failed_events",
    "operator_event",
    "operator_events",
    "parse_reply",
]

DEFERRED_WINDOW: Final = 3600.0
"""Seconds within which a recipient's deferrals make one ``message.deferred``."""
DEFERRED_PER_MESSAGE: Final = 100
"""The most ``message.deferred`` events one message makes in any :data:`DEFERRED_WINDOW`."""

# The deferral limits count a message's recent ``message.deferred`` rows: this index finds
# them without reading its other events (at most DEFERRED_PER_MESSAGE per window).
EMISSION_SCHEMA = """
CREATE INDEX events_deferred ON events (message_id, created_at)
    WHERE type = 'message.deferred';
"""

DELIVERY_TYPES: Final = (
    "message.delivered",
    "message.deferred",
    "message.bounced",
    "message.expired",
)
_REPLY: Final = re.compile(
    r"([2-5][0-9][0-9])(?: +([245]\.[0-9]{1,3}\.[0-9]{1,3}))?(?: +(.*))?", re.S
)


def parse_reply(reply: str) -> tuple[int | None, str | None, str]:
    """The basic code, enhanced status and text of a reply as the queue stores it
    (``"550 5.1.1 no such user"``); ``(None, None, reply)`` if it has no code."""
    match = _REPLY.fullmatch(reply)
    if match is None:
        return None, None, reply
    return int(match[1]), match[2], match[3] or ""


def _rfc3339(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def accepted_events(
    connection: Connection,
    message: NewMessage,
    subscriptions: Subscriptions,
    sandboxed: Callable[[str], bool] = lambda client: False,
    queued: int | None = None,
) -> None:
    """``message.accepted`` for ``message``, just inserted, if its client wants it;
    ``sandbox`` set if ``sandboxed(client)`` (its mail is recorded, never delivered).
    ``queued``: how many of its recipients were queued (the others were on the
    suppression list), if not all."""
    if not subscriptions.wants(message.client, "message.accepted"):
        return
    event = Event(
        "message.accepted",
        message.client,
        message.id,
        details={
            "from": message.sender,
            "recipients": len(message.recipients) if queued is None else queued,
            "channel": message.channel,
        },
        sandbox=sandboxed(message.client),
    )
    insert_events(connection, [event], message.received_at, subscriptions)


def delivery_events(
    connection: Connection,
    result: JobResult,
    applied: Sequence[RecipientUpdate],
    subscriptions: Subscriptions,
) -> None:
    """The events and suppressions of the ``applied`` updates of ``result`` (those that
    changed a pending recipient: a repeated result makes nothing twice)."""
    bounces = any(u.status == "bounced" and u.expired_after is None for u in applied)
    if not applied or not (bounces or subscriptions.by_client):
        return
    row = connection.execute(
        "SELECT client, sender, received_at FROM messages WHERE id = ?", (result.message_id,)
    ).fetchone()
    if row is None or not row[1]:
        return  # gone, or Rail's own notification
    client, received_at = str(row[0]), float(row[2])
    # A result that brings its own events (a sandboxed client's, rail.delivery.sandbox)
    # tells through them alone.
    wanted = (
        set() if result.events else {t for t in DELIVERY_TYPES if subscriptions.wants(client, t)}
    )
    if not wanted and not bounces:
        return
    now = result.attempted_at
    limit = _DeferralLimit(connection, result.message_id, now)
    events: list[Event] = []
    for update in applied:
        address, attempts, next_attempt_at = connection.execute(
            "SELECT address, attempts, next_attempt_at FROM recipients"
            " WHERE message_id = ? AND idx = ?",
            (result.message_id, update.idx),
        ).fetchone()
        where = {"mx": result.mx, "address": result.address, "tls": result.tls}

        def event(kind: str, details: dict[str, Any], rcpt: str = address) -> None:
            if kind in wanted:
                events.append(Event(kind, client, result.message_id, rcpt, details))

        if update.status == "sent":
            event(
                "message.delivered",
                {
                    **where,
                    "reply": update.reply,
                    "attempt": attempts,
                    "delay": round(max(0.0, now - received_at), 3),
                },
            )
        elif update.status == "deferred":
            if "message.deferred" in wanted and limit.allows(address):
                event(
                    "message.deferred",
                    {
                        **where,
                        "reply": update.reply,
                        "attempt": attempts,
                        # As stored: none while the message is on hold.
                        "next_attempt": _rfc3339(next_attempt_at),
                    },
                )
        elif update.expired_after is not None:
            event("message.expired", {"attempts": attempts, "last_reply": update.expired_after})
            event("message.bounced", _bounce(update, result, source="expired"))
        else:
            bounce = _bounce(update, result, source="smtp")
            if bounce["classification"] == "hard":
                bounce["suppressed"] = _suppress(connection, client, address, update, result)
            event("message.bounced", bounce)
    if events:
        insert_events(connection, events, now, subscriptions)


def operator_event(action: str, reply: str, reason: str | None) -> tuple[str, dict[str, Any]]:
    """The type and details of the event an operator's ``action`` (``bounce`` or
    ``delete``) makes for each recipient it ended, whose ``last_reply`` is now ``reply``."""
    if action != "bounce":
        return "message.deleted", {"reason": reason}
    code, enhanced, text = parse_reply(reply)
    return "message.bounced", {
        "source": "operator",
        "classification": classify(code, enhanced, text),
        "status": enhanced,
        "reply": reply,
        "mx": None,
        "suppressed": False,  # the address did nothing wrong
    }


def operator_events(
    connection: Connection,
    message_id: str,
    indexes: Sequence[int],
    action: str,
    reply: str,
    reason: str | None,
    now: float,
    subscriptions: Subscriptions,
) -> None:
    """What an operator's ``action`` (``bounce`` or ``delete``) on ``message_id`` tells its
    client, for the recipients it ended (``indexes``), with the ``reply`` they now show:
    without it, an app that follows its messages' outcomes would wait for ever on mail an
    operator ended."""
    kind, details = operator_event(action, reply, reason)
    _ended_events(connection, message_id, indexes, kind, details, now, subscriptions)


def failed_event(kind: str, reason: str) -> tuple[str, dict[str, Any]] | None:
    """The type and details of the event a quarantine of ``kind`` makes for each recipient
    it ended; None for ``corrupt``, whose damaged row cannot be trusted to name a client."""
    if kind == "corrupt":
        return None
    return "message.failed", {"kind": kind, "reason": reason}


def failed_events(
    connection: Connection,
    message_id: str,
    indexes: Sequence[int],
    kind: str,
    reason: str,
    now: float,
    subscriptions: Subscriptions,
) -> None:
    """What quarantining ``message_id`` tells its client, for the recipients it ended
    (``indexes``): the app would otherwise never hear of mail Rail gave up on."""
    event = failed_event(kind, reason)
    if event is not None:
        _ended_events(connection, message_id, indexes, *event, now, subscriptions)


def _ended_events(
    connection: Connection,
    message_id: str,
    indexes: Sequence[int],
    kind: str,
    details: dict[str, Any],
    now: float,
    subscriptions: Subscriptions,
) -> None:
    """An event of ``kind`` with ``details`` for each recipient of ``indexes``, when the
    message's client wants it (never for Rail's own notifications)."""
    if not indexes or not subscriptions.by_client:
        return
    row = connection.execute(
        "SELECT client, sender FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    if row is None or not row[1] or not subscriptions.wants(str(row[0]), kind):
        return  # gone, Rail's own notification, or not wanted
    client = str(row[0])
    ended = set(indexes)
    events = [
        Event(kind, client, message_id, str(address), details)
        for idx, address in connection.execute(
            "SELECT idx, address FROM recipients WHERE message_id = ? ORDER BY idx",
            (message_id,),
        )
        if int(idx) in ended
    ]
    if events:
        insert_events(connection, events, now, subscriptions)


def _bounce(update: RecipientUpdate, result: JobResult, *, source: str) -> dict[str, Any]:
    """The details of a ``message.bounced``; ``suppressed`` False until a hard bounce
    lists the address (:func:`_suppress`)."""
    code, enhanced, text = parse_reply(update.reply)
    return {
        "source": source,
        "classification": classify(code, enhanced, text),
        "status": enhanced,
        "reply": update.reply,
        "mx": result.mx,
        "suppressed": False,
    }


def _suppress(
    connection: Connection,
    client: str,
    address: str,
    update: RecipientUpdate,
    result: JobResult,
) -> bool:
    """List ``address``, which bounced hard, for ``client``; whether this listed it (an
    address already on the list keeps its first entry)."""
    if suppressions.suppressed(connection, client, [address]):
        return False
    suppressions.suppress(
        connection,
        [
            suppressions.Suppression(
                client=client,
                address=address,
                reason="hard_bounce",
                # The remote's answer to RCPT or DATA, or Rail's own routing verdict.
                source="rcpt" if update.remote_mta is not None else "route",
                created_at=result.attempted_at,
                message_id=result.message_id,
                detail=update.reply,
            )
        ],
    )
    return True


class _DeferralLimit:
    """Which deferrals of one message may still make an event at ``now``: read once per
    recorded attempt from the message's recent ``message.deferred`` rows (at most
    :data:`DEFERRED_PER_MESSAGE`), and counted on as this attempt adds its own."""

    def __init__(self, connection: Connection, message_id: str, now: float) -> None:
        self._connection = connection
        self._message_id = message_id
        self._now = now
        self._recent: list[str] | None = None

    def allows(self, address: str) -> bool:
        if self._recent is None:
            self._recent = [
                str(rcpt)
                for (rcpt,) in self._connection.execute(
                    "SELECT recipient FROM events WHERE type = 'message.deferred'"
                    " AND message_id = ? AND created_at > ?",
                    (self._message_id, self._now - DEFERRED_WINDOW),
                )
            ]
        if len(self._recent) >= DEFERRED_PER_MESSAGE or address in self._recent:
            return False
        self._recent.append(address)
        return True


def gave_up_events(
    connection: Connection,
    message_id: str,
    clients: Sequence[str],
    kind: str,
    reason: str,
    now: float,
    subscriptions: Subscriptions,
) -> None:
    """``inbound.failed`` for each of ``clients`` whose webhook job a quarantine of inbound
    ``message_id`` ended, unless the row was damaged (``corrupt``: it cannot be trusted to
    name the clients): their POST could not even be built, and they would never hear of
    that mail otherwise."""
    if kind == "corrupt":
        return
    for client in clients:
        failed = WebhookResult(message_id, client, now, "failed", QUARANTINE_PREFIX + reason)
        inbound_failed_events(connection, failed, subscriptions)


def inbound_failed_events(
    connection: Connection, result: WebhookResult, subscriptions: Subscriptions
) -> None:
    """``inbound.failed`` for the job of ``result``, which has just failed for good."""
    if not subscriptions.wants(result.client, "inbound.failed"):
        return
    (attempts,) = connection.execute(
        "SELECT attempts FROM webhooks WHERE message_id = ? AND client = ?",
        (result.message_id, result.client),
    ).fetchone()
    event = Event(
        "inbound.failed",
        result.client,
        result.message_id,
        details={"attempts": attempts, "last_reply": result.reply},
    )
    insert_events(connection, [event], result.attempted_at, subscriptions)
