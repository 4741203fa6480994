"""A batch's plain delivery results recorded together (PostgreSQL, pipeline mode).

:func:`rail.store.deliveries.record_result` waits for the server three times per result
(its state, its updates, whether its message finished). Most results are plain: their
recipients were sent or deferred (no bounce, so no DSN) and their client wants no event of
them. The writer's first pass without savepoints records a batch's plain results here:
one question for the state of all of them (their messages' rows locked, as
:func:`rail.store.deliveries.record_result` locks one), then one statement for all their
updates and one for the messages they finish, sent without waiting (the writer reads the
pending count after the batch). What is stored is what recording them one by one stores;
a result this cannot take (its recipients are gone, its client wants an event, it names
a recipient twice) is answered None, for the caller to record alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rail.events.subscriptions import Subscriptions
from rail.store.db import Connection, dialect_of
from rail.store.deliveries import check_leases
from rail.store.emit import DELIVERY_TYPES
from rail.store.lease import LeaseLostError
from rail.store.model import JobResult

__all__ = ["plain", "record_plain"]

_STATES = (
    "SELECT r.message_id, r.idx, r.claimed_by, r.lease_until, m.client, m.sender,"
    " EXISTS (SELECT 1 FROM recipients p WHERE p.message_id = r.message_id"
    " AND p.status IN ('queued', 'deferred')),"
    " EXISTS (SELECT 1 FROM holds h WHERE h.message_id = r.message_id), r.status"
    " FROM unnest(?::text[], ?::integer[]) AS k (message_id, idx)"
    " JOIN recipients r ON r.message_id = k.message_id AND r.idx = k.idx"
    " JOIN messages m ON m.id = r.message_id"
    " ORDER BY r.message_id, r.idx"  # messages locked in one order by every node
)


# Every update of the batch in one statement, each with its attempt row, in the batch's
# order; a recipient already final is left alone, as one update at a time leaves it. One
# statement is one tally upsert for all of them (rail.store.pgschema, schema 17).
_UPDATE_ALL = (
    "WITH k AS (SELECT * FROM unnest(?::text[], ?::integer[], ?::text[], ?::text[],"
    " ?::text[], ?::double precision[], ?::double precision[]) WITH ORDINALITY"
    " AS k (message_id, idx, status, reply, remote_mta, next_attempt_at, at, n)),"
    " u AS (UPDATE recipients r SET status = k.status, attempts = r.attempts + 1,"
    " last_reply = k.reply, remote_mta = k.remote_mta, next_attempt_at = k.next_attempt_at,"
    " updated_at = k.at, claimed_by = NULL, lease_until = k.at FROM k"
    " WHERE r.message_id = k.message_id AND r.idx = k.idx"
    " AND r.status IN ('queued', 'deferred') RETURNING k.*)"
    " INSERT INTO attempts (message_id, idx, at, status, reply, remote_mta)"
    " SELECT message_id, idx, at, status, reply, remote_mta FROM u ORDER BY n"
)
# The batch's messages that were pending, finished unless a recipient still is.
_FINISH_ALL = (
    "INSERT INTO finished (queue, id, finished_at)"
    " SELECT 'outbound', k.id, k.at FROM unnest(?::text[], ?::double precision[]) AS k (id, at)"
    " WHERE NOT EXISTS (SELECT 1 FROM recipients WHERE message_id = k.id"
    " AND status IN ('queued', 'deferred')) ON CONFLICT (queue, id) DO NOTHING"
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
    updates: list[tuple[object, ...]] = []
    finishing: dict[str, float] = {}  # message: when its last result in the batch came
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
        # The message finishes now unless a recipient is still pending, when this result
        # ends one (a result for recipients already final changes nothing, as alone).
        if states[0][6] and any(row[8] in ("queued", "deferred") for row in states):
            finishing[result.message_id] = result.attempted_at
        held = bool(states[0][7])
        for update in result.updates:
            deferred = update.status == "deferred" and not held
            updates.append(
                (
                    result.message_id,
                    update.idx,
                    update.status,
                    update.reply,
                    update.remote_mta,
                    update.next_attempt_at if deferred else None,
                    result.attempted_at,
                )
            )
        outcomes.append(True)
    if updates:
        connection.execute(_UPDATE_ALL, [list(column) for column in zip(*updates, strict=True)])
    if finishing:
        connection.execute(_FINISH_ALL, (list(finishing), list(finishing.values())))
    return outcomes
