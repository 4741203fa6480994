"""The admin API's and the client listing's side of the SQLite queue: all their SQL.

The actions run on the writer thread (:mod:`rail.store.writer`), inside its batch
transaction, so they never race delivery; list and show run on the store's read thread
(:mod:`rail.store.reader`). Each action returns its answer and how it changes the number
of pending messages (what ``max_queued`` counts). An action that makes recipients final
(delete, bounce) records the message in retention's ``finished`` table in the same
transaction, as a delivery result does; a held message stays pending for the counts, the
oldest pending message and retention, and is only kept out of claims (no next attempt
time).

A listing reads at most :data:`~rail.store.adminmodel.SCAN_BUDGET` messages newest first
(ids are ULIDs, so id order is arrival order) from its cursor, through the primary key
or, for one client, the ``messages_by_client`` index, and filters those; it never reads
message data. Retries go through the partial index of pending recipients.
"""

from __future__ import annotations

from rail.events.subscriptions import NO_SUBSCRIPTIONS, Subscriptions
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
from rail.store.db import Connection, dialect_of
from rail.store.deliveries import DSNBuilder, finish_bounced
from rail.store.emit import operator_events
from rail.store.messagemeta import read_meta
from rail.store.model import (
    MessageMeta,
    MessageStatus,
    NewMessage,
    RecipientStatus,
    overall_status,
)
from rail.store.purge import RECIPIENT_RETENTION, mark_finished
from rail.store.sendcheck import merged, read_suppressed

__all__ = [
    "ADMIN_SCHEMA",
    "MIGRATE_5_TO_6",
    "bounce",
    "delete",
    "hold",
    "list_messages",
    "release",
    "retry",
    "show_message",
]

# ``deleted`` is final like ``sent``, ``bounced`` and ``failed``: retention records and
# purges a deleted message (:func:`_finish`), and the tally counts it (the triggers upsert;
# its row is made here so the tally lists it from the start). Needs retention's tables.
ADMIN_SCHEMA = """
CREATE TABLE holds (
    message_id TEXT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    held_at REAL NOT NULL,
    actor TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE admin_actions (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX admin_actions_by_message ON admin_actions (message_id, at);
CREATE TABLE attempts (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    at REAL NOT NULL,
    status TEXT NOT NULL,
    reply TEXT,
    remote_mta TEXT
);
CREATE INDEX attempts_by_message ON attempts (message_id, idx, at);
CREATE INDEX messages_by_client ON messages (client, id);
INSERT OR IGNORE INTO tally (queue, status, n) VALUES ('outbound', 'deleted', 0);
"""

# From version 5 (retention). SQLite cannot change a CHECK constraint in place, so the
# recipients table is copied; dropping the old one drops its indexes and triggers, so the
# due index and retention's index and triggers (tally counts, leaving ``finished`` when a
# recipient is pending again) are made again on the copy. The copy fires no trigger: the
# tally and ``finished`` keep their rows as they were.
MIGRATE_5_TO_6 = (
    """
CREATE TABLE recipients_6 (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('queued', 'deferred', 'sent', 'bounced', 'failed', 'deleted')),
    attempts INTEGER NOT NULL,
    next_attempt_at REAL,
    last_reply TEXT,
    updated_at REAL NOT NULL,
    remote_mta TEXT,
    PRIMARY KEY (message_id, idx)
) WITHOUT ROWID;
INSERT INTO recipients_6 SELECT message_id, idx, address, status, attempts,
    next_attempt_at, last_reply, updated_at, remote_mta FROM recipients;
DROP TABLE recipients;
ALTER TABLE recipients_6 RENAME TO recipients;
CREATE INDEX recipients_pending ON recipients (next_attempt_at)
    WHERE status IN ('queued', 'deferred');
"""  # noqa: S608
    + RECIPIENT_RETENTION
    + ADMIN_SCHEMA
)

Change = tuple[object, int]
"""An action's answer and its change to the number of pending messages."""


def _like_domain(domain: str) -> str:
    """A LIKE pattern for addresses in ``domain`` (matched ignoring ASCII case, as
    domains are: :attr:`rail.store.db.Dialect.like_nocase`)."""
    escaped = domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return "%@" + escaped


def list_messages(connection: Connection, query: QueueQuery) -> Page:
    """The page of ``query``; see :class:`QueueQuery` and :data:`SCAN_BUDGET`."""
    limit = max(1, min(query.limit, MAX_PAGE))
    window: list[str] = []
    params: list[object] = []
    if query.client is not None:
        window.append("client = ?")
        params.append(query.client)
    if query.cursor is not None:
        window.append("id < ?")
        params.append(query.cursor)
    dialect = dialect_of(connection)
    candidates = _by_meta(connection, query)
    boundary: str | None
    if candidates is not None:
        # The window is the messages the tag or request id index names (client checked
        # on them, not through its index, so the plan reads only these).
        if not candidates:
            return Page((), None)
        boundary = min(candidates) if len(candidates) >= SCAN_BUDGET else None
        outer = [f"m.id IN ({', '.join('?' * len(candidates))})"]
        outer_params: list[object] = list(candidates)
        if query.client is not None:
            outer.append(f"{dialect.unindexed}m.client = ?")
            outer_params.append(query.client)
    else:
        where = f"WHERE {' AND '.join(window)}" if window else ""
        # The oldest message the window reaches, found in the index alone: the page query
        # then reads newest first down to it and stops at ``limit``.
        boundary_row = connection.execute(
            f"SELECT id FROM messages {where} ORDER BY id DESC LIMIT 1 OFFSET ?",  # noqa: S608
            [*params, SCAN_BUDGET - 1],
        ).fetchone()
        boundary = None if boundary_row is None else str(boundary_row[0])
        if boundary is not None:
            window.append("id >= ?")
            params.append(boundary)
        outer = [f"m.{condition}" for condition in window]
        outer_params = list(params)
    if query.tag is not None and query.request_id is not None:
        # The window came from the tag index: the request id is checked on it.
        outer.append(
            "EXISTS (SELECT 1 FROM message_meta mm WHERE mm.message_id = m.id"
            " AND mm.request_id = ?)"
        )
        outer_params.append(query.request_id)
    for key, value in query.metadata:
        # Keys are [A-Za-z0-9_.-] (rail.mail.meta), so quoting them makes a valid path.
        member = dialect.json_member.format("mm.metadata")
        outer.append(
            "EXISTS (SELECT 1 FROM message_meta mm WHERE mm.message_id = m.id"  # noqa: S608
            f" AND {member} = ?)"
        )
        outer_params.extend((dialect.json_key.format(key), value))
    if query.older_than is not None:
        outer.append("m.received_at < ?")
        outer_params.append(query.older_than)
    if query.newer_than is not None:
        outer.append("m.received_at >= ?")
        outer_params.append(query.newer_than)
    if query.status == "held":
        outer.append(
            "m.id IN (SELECT message_id FROM holds) AND EXISTS (SELECT 1 FROM recipients r"
            " WHERE r.message_id = m.id AND r.status IN ('queued', 'deferred'))"
        )
    elif query.status == "suppressed":
        outer.append("EXISTS (SELECT 1 FROM suppressed_recipients s WHERE s.message_id = m.id)")
    elif query.status is not None:
        outer.append(
            "EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.status = ?)"
        )
        outer_params.append(query.status)
        if query.status in ("queued", "deferred"):
            outer.append("m.id NOT IN (SELECT message_id FROM holds)")
    if query.domain is not None:
        outer.append(
            "EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id"  # noqa: S608
            f" AND r.address {dialect.like_nocase} ? ESCAPE '\\')"
        )
        outer_params.append(_like_domain(query.domain))
    if query.sender is not None:
        outer.append("m.sender = ?")
        outer_params.append(query.sender)
    if query.recipient is not None:
        outer.append(
            "EXISTS (SELECT 1 FROM recipients r WHERE r.message_id = m.id AND r.address = ?)"
        )
        outer_params.append(query.recipient)
    outer_where = f"WHERE {' AND '.join(outer)}" if outer else ""
    page = (
        f"SELECT m.id, m.client, m.sender, m.received_at, m.size FROM messages AS m {outer_where}"  # noqa: S608
    )
    rows = connection.execute(
        page + " ORDER BY m.id DESC LIMIT ?", [*outer_params, limit]
    ).fetchall()
    metas = read_meta(connection, [str(row[0]) for row in rows])
    messages = tuple(_summary(connection, row, metas) for row in rows)
    if len(messages) == limit:
        return Page(messages, messages[-1].id)
    # A full window may have more matches past it: go on from its oldest message.
    return Page(messages, boundary)


def _by_meta(connection: Connection, query: QueueQuery) -> list[str] | None:
    """For a query by tag or request id: the ids of up to :data:`SCAN_BUDGET` messages
    below the cursor, newest first, that the ``message_meta`` index finds for it (any
    client's: the caller filters); for a request id also the one the idempotency table
    remembers (messages accepted before schema 8 have no meta). None for other queries."""
    if query.tag is not None:
        column, value = "tag", query.tag
    elif query.request_id is not None:
        column, value = "request_id", query.request_id
    else:
        return None
    sql = f"SELECT message_id FROM message_meta WHERE {column} = ?"  # noqa: S608
    params: list[object] = [value]
    if query.cursor is not None:
        sql += " AND message_id < ?"
        params.append(query.cursor)
    found = [
        str(row[0])
        for row in connection.execute(
            sql + " ORDER BY message_id DESC LIMIT ?", [*params, SCAN_BUDGET]
        )
    ]
    if query.request_id is not None and query.tag is None:
        row = connection.execute(
            "SELECT message_id FROM idempotency WHERE client = ? AND key = ?",
            (query.client or "", query.request_id),
        ).fetchone()
        if row is not None and row[0] not in found:
            if query.cursor is None or row[0] < query.cursor:
                found.append(str(row[0]))
    return found


def _recipient_rows(connection: Connection, message_id: str) -> tuple[RecipientStatus, ...]:
    """Every recipient of ``message_id`` in order, the suppressed ones included."""
    queued = [
        (int(r[0]), RecipientStatus(*r[1:7]))
        for r in connection.execute(
            "SELECT idx, address, status, attempts, last_reply, next_attempt_at, updated_at"
            " FROM recipients WHERE message_id = ? ORDER BY idx",
            (message_id,),
        )
    ]
    return merged(queued, read_suppressed(connection, message_id))


def _summary(
    connection: Connection, row: tuple[object, ...], metas: dict[str, MessageMeta]
) -> MessageSummary:
    message_id, client, sender, received_at, size = row
    recipients = [(r.address, r.status) for r in _recipient_rows(connection, str(message_id))]
    return MessageSummary(
        id=str(message_id),
        client=str(client),
        sender=str(sender),
        received_at=float(received_at),  # type: ignore[arg-type]
        size=int(size),  # type: ignore[call-overload]
        status=_status(connection, str(message_id), tuple(status for _, status in recipients)),
        recipients=tuple(address for address, _ in recipients),
        meta=metas.get(str(message_id), MessageMeta()),
    )


def _held(connection: Connection, message_id: str) -> bool:
    """On hold with recipients still pending: an attempt in flight when the hold was
    placed may have finished the message, which leaves a hold row that means nothing."""
    return (
        connection.execute(
            "SELECT 1 FROM holds h WHERE h.message_id = ? AND EXISTS (SELECT 1 FROM"
            " recipients r WHERE r.message_id = h.message_id"
            " AND r.status IN ('queued', 'deferred'))",
            (message_id,),
        ).fetchone()
        is not None
    )


def _status(connection: Connection, message_id: str, states: tuple[str, ...]) -> str:
    """The overall status, ``held`` while on hold with recipients still pending."""
    status = overall_status(states)  # type: ignore[arg-type]
    if status in ("queued", "deferred") and _held(connection, message_id):
        return "held"
    return status


def show_message(connection: Connection, message_id: str) -> MessageDetail | None:
    """Everything stored about ``message_id``, or None."""
    row = connection.execute(
        "SELECT id, client, sender, channel, size, received_at, substr(data, 1, ?),"
        " (SELECT body_purged_at FROM finished WHERE queue = 'outbound' AND id = messages.id)"
        " FROM messages WHERE id = ?",
        (HEAD_BYTES, message_id),
    ).fetchone()
    if row is None:
        return None
    recipients = _recipient_rows(connection, message_id)
    mtas = dict(
        connection.execute(
            "SELECT idx, remote_mta FROM recipients WHERE message_id = ?", (message_id,)
        ).fetchall()
    )
    head = row[6] if isinstance(row[6], bytes) else b""
    order = dialect_of(connection).insertion_order
    history = tuple(
        Attempt(*a)
        for a in connection.execute(
            "SELECT idx, at, status, reply, remote_mta FROM attempts WHERE message_id = ?"  # noqa: S608
            f" ORDER BY idx, at, {order}",
            (message_id,),
        )
    )
    actions = tuple(
        AdminAction(*a)
        for a in connection.execute(
            "SELECT at, actor, action, reason FROM admin_actions WHERE message_id = ?"  # noqa: S608
            f" ORDER BY at, {order}",
            (message_id,),
        )
    )
    return MessageDetail(
        status=MessageStatus(
            id=row[0],
            client=row[1],
            sender=row[2],
            channel=row[3],
            size=row[4],
            received_at=row[5],
            status=overall_status(tuple(r.status for r in recipients)),
            recipients=recipients,
            reason=next((r.last_reply for r in recipients if r.status == "failed"), None),
            body_purged_at=row[7],
            meta=read_meta(connection, [message_id]).get(message_id, MessageMeta()),
        ),
        held=_held(connection, message_id),
        head=head,
        remote_mta=tuple(mtas.get(index) for index in range(len(recipients))),
        actions=actions,
        history=history,
    )


def _exists(connection: Connection, message_id: str) -> bool:
    return (
        connection.execute("SELECT 1 FROM messages WHERE id = ?", (message_id,)).fetchone()
        is not None
    )


def _record(
    connection: Connection,
    message_id: str,
    now: float,
    actor: str,
    action: str,
    reason: str | None,
) -> None:
    connection.execute(
        "INSERT INTO admin_actions (message_id, at, actor, action, reason) VALUES (?,?,?,?,?)",
        (message_id, now, actor, action, reason),
    )


def retry(connection: Connection, target: RetryTarget, now: float, actor: str) -> Change:
    """Pending recipients of ``target`` waiting for a later attempt are due at ``now``;
    the answer is how many, or None for a ``message_id`` that does not exist. Held
    messages (no next attempt time) are left alone.

    One message's rows are locked with the batch's others, in order
    (:attr:`rail.store.ops.AdminOp.message_id`). A domain, or everything, spans messages
    other nodes may be recording results for at this moment: their rows are skipped, not
    waited for (on PostgreSQL), since waiting on them while holding rows another node's
    batch waits for would be a deadlock; a row being recorded gets its next attempt time
    from its result anyway."""
    dialect = dialect_of(connection)
    condition = "status IN ('queued', 'deferred') AND next_attempt_at > ?"
    params: list[object] = [now, now]
    if target.message_id is not None:
        if not _exists(connection, target.message_id):
            return None, 0
        sql = f"UPDATE recipients SET next_attempt_at = ? WHERE {condition} AND message_id = ?"  # noqa: S608
        params.append(target.message_id)
    else:
        if target.domain is not None:
            condition += f" AND address {dialect.like_nocase} ? ESCAPE '\\'"
            params.append(_like_domain(target.domain))
        skip = " FOR NO KEY UPDATE SKIP LOCKED" if dialect.skip_locked else ""
        sql = (
            "UPDATE recipients SET next_attempt_at = ? WHERE (message_id, idx) IN"  # noqa: S608
            f" (SELECT message_id, idx FROM recipients WHERE {condition}{skip})"
        )
    count = connection.execute(sql, params).rowcount
    if target.message_id is not None and count:
        _record(connection, target.message_id, now, actor, "retry", None)
    return count, 0


def hold(
    connection: Connection, message_id: str, now: float, actor: str, reason: str | None
) -> Change:
    """Take ``message_id``'s pending recipients out of every claim until released."""
    if not _exists(connection, message_id):
        return "not_found", 0
    if _held(connection, message_id):
        return "already_held", 0
    count = connection.execute(
        "UPDATE recipients SET next_attempt_at = NULL"
        " WHERE message_id = ? AND status IN ('queued', 'deferred')",
        (message_id,),
    ).rowcount
    if not count:
        return "not_pending", 0
    connection.execute(
        "INSERT INTO holds (message_id, held_at, actor) VALUES (?, ?, ?)",
        (message_id, now, actor),
    )
    _record(connection, message_id, now, actor, "hold", reason)
    return "done", 0


def release(connection: Connection, message_id: str, now: float, actor: str) -> Change:
    """Lift the hold of ``message_id``; its pending recipients are due at ``now``."""
    if not _exists(connection, message_id):
        return "not_found", 0
    if not _held(connection, message_id):
        return "not_held", 0
    connection.execute("DELETE FROM holds WHERE message_id = ?", (message_id,))
    connection.execute(
        "UPDATE recipients SET next_attempt_at = ?"
        " WHERE message_id = ? AND status IN ('queued', 'deferred')",
        (now, message_id),
    )
    _record(connection, message_id, now, actor, "release", None)
    return "done", 0


def delete(
    connection: Connection,
    message_id: str,
    now: float,
    actor: str,
    reason: str,
    subscriptions: Subscriptions = NO_SUBSCRIPTIONS,
) -> Change:
    """Every pending recipient of ``message_id`` becomes ``deleted`` (final, no DSN), a
    ``message.deleted`` event each for a client that wants it. The answer is
    ``(AdminOutcome, None)``."""
    return _finish(connection, message_id, now, actor, "delete", reason, None, subscriptions)


def bounce(
    connection: Connection,
    message_id: str,
    now: float,
    actor: str,
    reason: str | None,
    dsn: DSNBuilder | None,
    subscriptions: Subscriptions = NO_SUBSCRIPTIONS,
) -> Change:
    """Every pending recipient of ``message_id`` becomes ``bounced`` and the DSN is
    queued as for a remote 5xx (none for a null reverse-path), a ``message.bounced``
    event each (``source`` ``operator``) for a client that wants it. The answer is
    ``(AdminOutcome, the DSN or None)``."""
    return _finish(connection, message_id, now, actor, "bounce", reason, dsn, subscriptions)


def _finish(
    connection: Connection,
    message_id: str,
    now: float,
    actor: str,
    action: str,
    reason: str | None,
    dsn: DSNBuilder | None,
    subscriptions: Subscriptions,
) -> Change:
    if not _exists(connection, message_id):
        return ("not_found", None), 0
    if action == "delete":
        status, reply = "deleted", f"deleted by {actor}: {reason}"
    else:
        status = "bounced"
        reply = f"550 5.0.0 bounced by the operator ({actor})" + (f": {reason}" if reason else "")
    # The recipients this statement ended, as it ended them: a result recorded by another
    # node meanwhile (PostgreSQL, READ COMMITTED) is not counted as ended here.
    pending = sorted(
        int(row[0])
        for row in connection.execute(
            "UPDATE recipients SET status = ?, last_reply = ?, remote_mta = NULL,"
            " next_attempt_at = NULL, updated_at = ?"
            " WHERE message_id = ? AND status IN ('queued', 'deferred') RETURNING idx",
            (status, reply, now, message_id),
        ).fetchall()
    )
    if not pending:
        return ("not_pending", None), 0
    connection.execute("DELETE FROM holds WHERE message_id = ?", (message_id,))
    _record(connection, message_id, now, actor, action, reason)
    # Every pending recipient is final now: the message is finished for retention, in
    # this transaction, as record_result does.
    mark_finished(connection, "outbound", message_id, now)
    operator_events(connection, message_id, pending, action, reply, reason, now, subscriptions)
    notification: NewMessage | None = None
    if action == "bounce":
        notification = finish_bounced(connection, message_id, dsn, pending)
    outcome: AdminOutcome = "done"
    return (outcome, notification), (notification is not None) - 1
