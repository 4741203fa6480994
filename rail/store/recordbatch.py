"""A batch's plain delivery results recorded together (PostgreSQL, pipeline mode).

:func:`rail.store.deliveries.record_result` waits for the server three times per result
(its state, its updates, whether its message finished). Most results are plain: their
recipients were sent or deferred (no bounce, so no DSN) and their client wants no event of
them. The writer's first pass without savepoints records a batch's plain results here:
one question for the state of all of them (their messages' rows locked, as
:func:`rail.store.deliveries.record_result` locks one), then every update and every
``finished`` row
sent without waiting (the writer reads the pending count after the batch). What
is stored is what recording them one by one stores; a result this cannot take (its
recipients are gone, its client wants an event, it names a recipient twice) is answered
None, for the caller to record alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rail.events.subscriptions import Subscriptions
from rail.store.db import Connection, dialect_of
from rail.store.deliveries import FINISH_UNLESS_PENDING, UPDATE_WITH_ATTEMPT, check_leases
from rail.store.emit import DELIVERY_TYPES
from rail.store.lease import LeaseLostError
from rail.store.model import JobResult

__all__ = ["plain", "record_plain"]

_STATES = (
    "SELECT r.message_id, r.idx, r.claimed_by, r.lease_until, m.client, m.sender,"
    " EXISTS (SELECT 1 FROM recipients p WHERE p.message_id = r.message_id"
    " AND p.status IN ('queued', 'deferred')),"
    " EXISTS (SELECT 1 FROM holds h WHERE h.message_id = r.message_id)"
    " FROM unnest(?::text[], ?::integer[]) AS k (message_id, idx)"
    " JOIN recipients r ON r.message_id = k.message_id AND r.idx = k.idx"
    " JOIN messages m ON m.id = r.message_id"
    " ORDER BY r.message_id, r.idx"  # messages locked in one order by every node
)


def plain(result: JobResult) -> bool:
    """Whether ``result`` may be recorded here as far as it alone tells: no bounce and
    no events of its own (its client's subscriptions are checked with its state)."""
    return not result.events and all(update.status != "bounced" for update in result.updates)


def record_plain(
    connection: Connection,
    results: Sequence[JobResult],
    subscriptions: Subscriptions,
    node: str | None,
) -> list[bool | LeaseLostError | None]:
    """Record the plain ``results`` (:func:`plain`); for each, in order: True (recorded),
    the LeaseLostError that refuses it (nothing written for it), or None (record it
    alone)."""
    keys = [(r.message_id, u.idx) for r in results for u in r.updates]
    rows = connection.execute(
        _STATES + dialect_of(connection).lock_message,
        ([message_id for message_id, _ in keys], [idx for _, idx in keys]),
    ).fetchall()
    found: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        found.setdefault(row[0], []).append(row)
    seen: set[tuple[str, int]] = set()
    outcomes: list[bool | LeaseLostError | None] = []
    for result in results:
        own = {(result.message_id, update.idx) for update in result.updates}
        states = [row for row in found.get(result.message_id, ()) if (row[0], row[1]) in own]
        if (
            not states
            or own & seen
            or len(own) < len(result.updates)
            or any(subscriptions.wants(states[0][4], kind) for kind in DELIVERY_TYPES)
        ):
            outcomes.append(None)
            continue
        seen |= own
        try:
            check_leases(result.message_id, [row[1:4] for row in states], node)
        except LeaseLostError as error:
            outcomes.append(error)
            continue
        pending, held = bool(states[0][6]), bool(states[0][7])
        for update in result.updates:
            deferred = update.status == "deferred" and not held
            connection.execute(
                UPDATE_WITH_ATTEMPT,
                (
                    update.status,
                    update.reply,
                    update.remote_mta,
                    update.next_attempt_at if deferred else None,
                    result.attempted_at,
                    result.attempted_at,
                    result.message_id,
                    update.idx,
                    result.message_id,
                    result.attempted_at,
                    update.status,
                    update.reply,
                    update.remote_mta,
                ),
            )
        if pending:  # finished now, unless a recipient is still pending
            connection.execute(
                FINISH_UNLESS_PENDING, (result.message_id, result.attempted_at, result.message_id)
            )
        outcomes.append(True)
    return outcomes
