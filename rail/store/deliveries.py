"""Delivery's side of the SQLite queue: find due work, record attempts, hand over bounces.

These functions run on the writer thread (:mod:`rail.store.writer`), inside its
transactions. Due recipients are read through the partial index over pending rows in
``next_attempt_at`` order, ``limit`` at a time, so a million queued recipients cost the
scheduler nothing until they are due. A claim verifies each message it reads
(:mod:`rail.store.integrity`) and reports the damaged ones instead of failing. Recording
an attempt in which recipients bounced builds their bounce (through the caller's ``dsn``
function) and stores it in the same transaction: a crash cannot lose it, and it cannot
be made twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from typing import Any

from rail.events.subscriptions import NO_SUBSCRIPTIONS, Subscriptions
from rail.store.db import Connection, dialect_of
from rail.store.emit import delivery_events
from rail.store.integrity import (
    UnreadableRowError,
    number,
    stored_bytes,
    text,
    verified_row,
    verified_rows,
)
from rail.store.jobends import jobs_pending, quarantine_jobs
from rail.store.lease import Lease, LeaseLostError, claimable, for_update, still_held, take
from rail.store.messagemeta import insert_meta
from rail.store.model import (
    BouncedRecipient,
    BounceReport,
    DeliveryJob,
    DueRecipient,
    JobResult,
    NewMessage,
)

__all__ = [
    "DSNBuilder",
    "claim_due",
    "finish_bounced",
    "oldest_pending_received_at",
    "quarantine_message",
    "recipient_counts",
    "recipient_domain",
    "record_result",
]

DSNBuilder = Callable[[BounceReport], NewMessage | None]
"""Makes the delivery status notification for a message that bounced (or None: no DSN,
e.g. for a null reverse-path)."""


def recipient_domain(address: str) -> str:
    """The domain part of ``address``, lower-cased: recipients are grouped by it."""
    return address.rpartition("@")[2].lower()


def claim_due(
    connection: Connection,
    now: float,
    limit: int,
    exclude: Collection[tuple[str, str]],
    lease: Lease | None = None,
) -> tuple[list[DeliveryJob], dict[str, str]]:
    """Up to ``limit`` jobs whose recipients are due at ``now``, oldest due first,
    skipping the (message id, domain) pairs of ``exclude`` (already in flight); and the
    messages among them that cannot be sent as stored, with the reason (see
    :mod:`rail.store.integrity`). Those give no job: the caller quarantines them (and may
    claim again to fill ``limit``).

    With a ``lease`` (several nodes share the queue: run it in a transaction), only
    recipients no other node holds are read, and the jobs' recipients are taken under
    ``lease`` (:mod:`rail.store.lease`)."""
    free, params = claimable(lease)
    as_bytes = dialect_of(connection).as_bytes
    rows = connection.execute(
        f"SELECT message_id, idx, {as_bytes.format('address')}, attempts,"  # noqa: S608
        f" {as_bytes.format('last_reply')}"
        " FROM recipients WHERE status IN ('queued', 'deferred') AND next_attempt_at <= ?"
        + free
        + " ORDER BY next_attempt_at LIMIT ?"
        + for_update(connection, lease),
        (now, *params, limit + len(exclude)),
    ).fetchall()
    grouped: dict[tuple[str, str], list[DueRecipient]] = {}
    bad: dict[str, str] = {}
    # Most rows read are in flight already (the query reads past them): those are told by
    # their message id and domain before anything else of them is decoded.
    busy = {message_id for message_id, _ in exclude}
    for message_id, idx, raw_address, attempts, raw_reply in rows:
        if message_id in bad:
            continue
        try:
            address = text(raw_address, "recipient address")
            if message_id in busy and (message_id, recipient_domain(address)) in exclude:
                continue
            recipient = DueRecipient(
                int(number(idx, "recipient index")),
                address,
                int(number(attempts, "recipient attempts")),
                None if raw_reply is None else text(raw_reply, "recipient reply"),
            )
        except UnreadableRowError as error:
            bad[message_id] = str(error)
            continue
        key = (message_id, recipient_domain(address))
        if key in exclude:
            continue
        if key not in grouped:
            if len(grouped) >= limit:
                continue
            grouped[key] = []
        grouped[key].append(recipient)
    jobs: list[DeliveryJob] = []
    messages: dict[str, _Message] = {}
    wanted = list(dict.fromkeys(mid for mid, _ in grouped if mid not in bad))
    if wanted and dialect_of(connection).array_parameters:  # all in one statement
        for message_id, read in _read_messages(connection, wanted).items():
            if isinstance(read, UnreadableRowError):
                bad[message_id] = str(read)
            else:
                messages[message_id] = read
    for (message_id, domain), recipients in grouped.items():
        if message_id in bad:
            continue
        if message_id not in messages:
            try:
                messages[message_id] = _read_message(connection, message_id)
            except UnreadableRowError as error:
                bad[message_id] = str(error)
                continue
        client, sender, received_at, smtputf8, eight_bit, data = messages[message_id]
        jobs.append(
            DeliveryJob(
                message_id=message_id,
                domain=domain,
                client=client,
                sender=sender,
                received_at=received_at,
                smtputf8=smtputf8,
                eight_bit=eight_bit,
                recipients=tuple(recipients),
                data=data,
            )
        )
    if lease is not None:
        keys = [(job.message_id, r.idx) for job in jobs for r in job.recipients]
        take(connection, "recipients", ("message_id", "idx"), keys, lease)
    return jobs, bad


_Message = tuple[str, str, float, bool, bool, bytes]


# The columns of a message a delivery job needs besides its data (client and sender read
# as bytes: rail.store.integrity).
_ENVELOPE = "{client}, {sender}, received_at, smtputf8, eight_bit"


def _envelope(fields: tuple[Any, ...]) -> _Message:
    client, sender, received_at, smtputf8, eight_bit, data = fields
    return (
        text(client, "client"),
        text(sender, "sender"),
        number(received_at, "received_at"),
        bool(smtputf8),
        bool(eight_bit),
        data,
    )


def _read_messages(
    connection: Connection, message_ids: list[str]
) -> dict[str, _Message | UnreadableRowError]:
    """:func:`_read_message` of each of ``message_ids``, in one statement."""
    as_bytes = dialect_of(connection).as_bytes
    columns = _ENVELOPE.format(client=as_bytes.format("client"), sender=as_bytes.format("sender"))
    found: dict[str, _Message | UnreadableRowError] = {}
    for message_id, row in verified_rows(connection, "messages", columns, message_ids).items():
        try:
            found[message_id] = row if isinstance(row, UnreadableRowError) else _envelope(row)
        except UnreadableRowError as error:
            found[message_id] = error
    return found


def _read_message(connection: Connection, message_id: str) -> _Message:
    """The envelope and verified data of ``message_id``; :class:`UnreadableRowError` if the
    row is missing or damaged, including pages SQLite reports corrupt (any other SQLite
    error, such as an I/O error, is the store's and propagates)."""
    as_bytes = dialect_of(connection).as_bytes
    columns = _ENVELOPE.format(client=as_bytes.format("client"), sender=as_bytes.format("sender"))
    return _envelope(verified_row(connection, "messages", columns, message_id))


def quarantine_message(
    connection: Connection,
    message_id: str,
    reason: str,
    now: float,
    node: str | None = None,
) -> list[int]:
    """Make every pending recipient of ``message_id`` ``failed`` with ``reason``
    (:func:`rail.store.jobends.quarantine_jobs`); the ``idx`` of those that were pending."""
    ended = quarantine_jobs(connection, "outbound", message_id, reason, now, node)
    return [int(idx) for idx in ended]


def record_result(
    connection: Connection,
    result: JobResult,
    dsn: DSNBuilder | None,
    subscriptions: Subscriptions = NO_SUBSCRIPTIONS,
    node: str | None = None,
) -> tuple[bool, NewMessage | None]:
    """Apply ``result``; return whether its message just left the pending set, and the
    DSN stored for it, if any. Updates of recipients that are already final are ignored,
    so recording the same result twice changes nothing. The events ``subscriptions``
    ask for and the suppressions of hard bounces are stored with it
    (:mod:`rail.store.emit`). Recording ends the recipients' lease.

    With leases (``node``: this node), a result for recipients another node holds now, or
    took over and recorded, raises :class:`LeaseLostError` before anything is written:
    that node's own attempt decides them (:func:`rail.store.lease.still_held`)."""
    message_id = result.message_id
    one_trip = dialect_of(connection).one_statement_inserts
    state = _state(connection, result, node)
    if state is None:
        still_held(
            connection,
            "recipients",
            ("message_id", "idx"),
            [(message_id, update.idx) for update in result.updates],
            node,
        )
        was_pending = jobs_pending(connection, "outbound", message_id)
        # A message put on hold while this attempt was in flight stays held: a deferral
        # leaves it with no next attempt time (rail.store.admin).
        held = (
            connection.execute("SELECT 1 FROM holds WHERE message_id = ?", (message_id,)).fetchone()
            is not None
        )
    else:
        was_pending, held = state
    changed = []
    bounced: list[int] = []
    for update in result.updates:
        values = (
            update.status,
            update.reply,
            update.remote_mta,
            update.next_attempt_at if update.status == "deferred" and not held else None,
            result.attempted_at,
            result.attempted_at,
            message_id,
            update.idx,
        )
        if one_trip:  # the update and its history row in one round trip to the server
            applied = connection.execute(
                UPDATE_WITH_ATTEMPT,
                (
                    *values,
                    message_id,
                    result.attempted_at,
                    update.status,
                    update.reply,
                    update.remote_mta,
                ),
            ).rowcount
            if applied:
                changed.append(update)
                if update.status == "bounced":
                    bounced.append(update.idx)
            continue
        applied = connection.execute(_UPDATE, values).rowcount
        if applied:
            changed.append(update)
            # The history ``rail queue show`` prints (rail.store.admin reads it).
            connection.execute(
                "INSERT INTO attempts (message_id, idx, at, status, reply, remote_mta)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    message_id,
                    update.idx,
                    result.attempted_at,
                    update.status,
                    update.reply,
                    update.remote_mta,
                ),
            )
            if update.status == "bounced":
                bounced.append(update.idx)
    delivery_events(connection, result, changed, subscriptions)
    # A recipient's final failure is reported at once, not held until its siblings are
    # final: one DSN for the recipients that bounced in this result.
    notification = finish_bounced(connection, message_id, dsn, bounced) if bounced else None
    if not was_pending:
        return False, notification
    finished = connection.execute(  # finished unless still pending, in one statement
        FINISH_UNLESS_PENDING, (message_id, result.attempted_at, message_id)
    ).rowcount
    return bool(finished), notification


_UPDATE = (
    "UPDATE recipients SET status = ?, attempts = attempts + 1, last_reply = ?,"
    " remote_mta = ?, next_attempt_at = ?, updated_at = ?, claimed_by = NULL,"
    " lease_until = ? WHERE message_id = ? AND idx = ? AND status IN ('queued', 'deferred')"
)
# The message finished, unless a recipient is still pending (PostgreSQL: one round trip).
FINISH_UNLESS_PENDING = (
    "INSERT INTO finished (queue, id, finished_at) SELECT 'outbound', ?, ?"
    " WHERE NOT EXISTS (SELECT 1 FROM recipients WHERE message_id = ?"
    " AND status IN ('queued', 'deferred')) ON CONFLICT (queue, id) DO NOTHING"
)
UPDATE_WITH_ATTEMPT = (
    f"WITH u AS ({_UPDATE} RETURNING idx)"  # noqa: S608  (constant text)
    " INSERT INTO attempts (message_id, idx, at, status, reply, remote_mta)"
    " SELECT ?, idx, ?, ?, ?, ? FROM u"
)


def _state(connection: Connection, result: JobResult, node: str | None) -> tuple[bool, bool] | None:
    """In one round trip: whether the message is pending and held, after checking that
    this node may record ``result`` (:func:`rail.store.lease.still_held`, whose errors it
    raises), the message's row locked (:attr:`rail.store.db.Dialect.lock_message`); None
    when none of its recipients is there any more (the caller asks again, one question at
    a time)."""
    indexes = [update.idx for update in result.updates]
    marks = ", ".join("?" * len(indexes))
    rows = connection.execute(
        "SELECT r.idx, r.claimed_by, r.lease_until,"  # noqa: S608  (placeholders only)
        " EXISTS (SELECT 1 FROM recipients p WHERE p.message_id = m.id"
        " AND p.status IN ('queued', 'deferred')),"
        " EXISTS (SELECT 1 FROM holds h WHERE h.message_id = m.id)"
        " FROM messages m JOIN recipients r ON r.message_id = m.id"
        f" WHERE m.id = ? AND r.idx IN ({marks})" + dialect_of(connection).lock_message,
        (result.message_id, *indexes),
    ).fetchall()
    if not rows:
        return None
    check_leases(result.message_id, [row[:3] for row in rows], node)
    return bool(rows[0][3]), bool(rows[0][4])


def check_leases(message_id: str, rows: list[tuple[Any, ...]], node: str | None) -> None:
    """Raise :class:`LeaseLostError` unless ``node`` may record a result for recipients
    whose ``(idx, claimed_by, lease_until)`` are ``rows`` (see :func:`still_held`)."""
    if node is None:
        return
    for idx, claimed_by, lease_until in rows:
        if claimed_by == node or (claimed_by is None and lease_until is None):
            continue
        name = f"{message_id}/{idx}"
        if claimed_by is None:
            raise LeaseLostError(f"recipients {name} was taken over and recorded by another node")
        raise LeaseLostError(f"recipients {name} is held by {claimed_by}")


def finish_bounced(
    connection: Connection,
    message_id: str,
    dsn: DSNBuilder | None,
    indexes: Collection[int],
) -> NewMessage | None:
    """For recipients of ``message_id`` that have just bounced (their ``indexes``):
    store the DSN ``dsn`` makes of them, if any, and return it."""
    report = _bounce_report(connection, message_id, indexes)
    if report is None or dsn is None:
        return None
    notification = dsn(report)
    if notification is not None:
        insert_message(connection, notification)
    return notification


_INSERT_MESSAGE = (
    "INSERT INTO messages (id, client, sender, channel, smtputf8, eight_bit,"
    " received_at, size, sha256, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The message and its recipients in one statement (Dialect.one_statement_inserts).
_INSERT_WITH_RECIPIENTS = (
    "WITH m AS (" + _INSERT_MESSAGE + " RETURNING id)"  # noqa: S608
    " INSERT INTO recipients (message_id, idx, address, status, attempts, next_attempt_at,"
    " last_reply, updated_at) SELECT m.id, r.idx, r.address, 'queued', 0, ?, NULL, ?"
    " FROM m, unnest(?::integer[], ?::text[]) AS r (idx, address)"
)


# Several messages and their recipients in one statement (PostgreSQL): one array per column.
_INSERT_MANY = (
    "WITH m AS (INSERT INTO messages (id, client, sender, channel, smtputf8, eight_bit,"
    " received_at, size, sha256, data) SELECT * FROM unnest(?::text[], ?::text[], ?::text[],"
    " ?::text[], ?::integer[], ?::integer[], ?::float8[], ?::bigint[], ?::text[], ?::bytea[])"
    " RETURNING id, received_at)"
    " INSERT INTO recipients (message_id, idx, address, status, attempts, next_attempt_at,"
    " last_reply, updated_at) SELECT m.id, r.idx, r.address, 'queued', 0, m.received_at,"
    " NULL, m.received_at FROM unnest(?::text[], ?::integer[], ?::text[])"
    " AS r (message_id, idx, address) JOIN m ON m.id = r.message_id"
)


def _insert_many(connection: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Messages (each a row of :func:`insert_message` with its kept recipients last) in
    one statement: the recipients join the inserted messages, so they follow them."""
    if len(rows) == 1:
        *row, kept = rows[0]
        received_at = row[6]
        connection.execute(
            _INSERT_WITH_RECIPIENTS,
            (*row, received_at, received_at, [i for i, _ in kept], [a for _, a in kept]),
        )
        return
    columns: list[list[Any]] = [[] for _ in range(10)]
    owners: list[str] = []
    indexes: list[int] = []
    addresses: list[str] = []
    for *row, kept in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
        for index, address in kept:
            owners.append(row[0])
            indexes.append(index)
            addresses.append(address)
    columns[4] = [int(value) for value in columns[4]]
    columns[5] = [int(value) for value in columns[5]]
    connection.execute(_INSERT_MANY, (*columns, owners, indexes, addresses))


def insert_message(connection: Connection, message: NewMessage, skip: Collection[int] = ()) -> None:
    """Store ``message`` and its queued recipient rows (no limits: the caller decided),
    except the recipients whose index is in ``skip`` (suppressed: rail.store.sendcheck)."""
    row = (
        message.id,
        message.client,
        message.sender,
        message.channel,
        message.smtputf8,
        message.eight_bit,
        message.received_at,
        len(message.data),
        hashlib.sha256(message.data).hexdigest(),
        message.data,
    )
    if dialect_of(connection).one_statement_inserts:
        kept = [(i, address) for i, address in enumerate(message.recipients) if i not in skip]
        defer = getattr(connection, "defer", None)
        if defer is not None:  # with the batch's other messages, in one statement
            defer(_insert_many, (*row, kept))
        else:
            connection.execute(
                _INSERT_WITH_RECIPIENTS,
                (
                    *row,
                    message.received_at,
                    message.received_at,
                    [index for index, _ in kept],
                    [address for _, address in kept],
                ),
            )
        insert_meta(connection, message.id, message.meta)
        return
    connection.execute(_INSERT_MESSAGE, row)
    rows = [
        (message.id, index, address, message.received_at, message.received_at)
        for index, address in enumerate(message.recipients)
        if index not in skip
    ]
    insert = (
        "INSERT INTO recipients (message_id, idx, address, status, attempts,"
        " next_attempt_at, last_reply, updated_at) VALUES (?, ?, ?, 'queued', 0, ?, NULL, ?)"
    )
    if len(rows) == 1:
        connection.execute(insert, rows[0])  # most mail: one statement, not a batch of one
    else:
        connection.executemany(insert, rows)
    insert_meta(connection, message.id, message.meta)


def recipient_counts(connection: Connection) -> dict[str, int]:
    """Recipients by status, every status present (zero when none): read from the
    ``tally`` the triggers keep (:mod:`rail.store.purge`), a few rows whatever the queue
    holds."""
    counts = dict.fromkeys(("queued", "deferred", "sent", "bounced", "failed", "deleted"), 0)
    for status, count in connection.execute(
        "SELECT status, sum(n) FROM tally WHERE queue = 'outbound' GROUP BY status"
    ):
        counts[status] = int(count)
    return counts


def oldest_pending_received_at(connection: Connection) -> float | None:
    """When the oldest message with a ``queued`` or ``deferred`` recipient was received,
    or None. O(log n): the smallest pending message id comes from the partial index
    ``recipients_pending_message``; ids are ULIDs of the acceptance time, so this is the
    oldest pending message to the millisecond (a clock stepped back can reorder them)."""
    row = connection.execute(
        "SELECT min(message_id) FROM recipients WHERE status IN ('queued', 'deferred')"
    ).fetchone()
    if row is None or row[0] is None:
        return None
    received = connection.execute(
        "SELECT received_at FROM messages WHERE id = ?", (row[0],)
    ).fetchone()
    return None if received is None else float(received[0])


def _bounce_report(
    connection: Connection, message_id: str, indexes: Collection[int]
) -> BounceReport | None:
    wanted = set(indexes)
    bounced = tuple(
        BouncedRecipient(address, reply or "", remote_mta, updated_at)
        for idx, address, reply, remote_mta, updated_at in connection.execute(
            "SELECT idx, address, last_reply, remote_mta, updated_at FROM recipients"
            " WHERE message_id = ? AND status = 'bounced' ORDER BY idx",
            (message_id,),
        )
        if idx in wanted
    )
    if not bounced:
        return None
    client, sender, received_at, data = connection.execute(
        "SELECT client, sender, received_at, data FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    return BounceReport(message_id, client, sender, received_at, stored_bytes(data), bounced)
