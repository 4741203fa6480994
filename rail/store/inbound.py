"""The inbound spool's side of the SQLite store: store received mail, find due webhooks,
record their outcomes and hand failures over as DSNs.

These functions run on the writer thread (:mod:`rail.store.writer`), inside its
transactions, like :mod:`rail.store.deliveries`; a claim verifies each message it reads
and reports the damaged ones instead of failing. A message and its webhook jobs are one
insert in the batch's group-committed transaction: fsynced before ``250``. A job that fails
for good and whose message allows bounces gets its DSN queued for outbound delivery in the
same transaction, so it is made exactly once, even across crashes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from typing import Any

from rail.events.subscriptions import NO_SUBSCRIPTIONS, Subscriptions
from rail.inbound.model import InboundMessage, InboundStatus, WebhookJob, WebhookResult
from rail.store.db import Connection, dialect_of
from rail.store.deliveries import DSNBuilder, insert_message
from rail.store.emit import inbound_failed_events
from rail.store.integrity import (
    UnreadableRowError,
    number,
    stored_bytes,
    text,
    verified_row,
)
from rail.store.jobends import jobs_pending, lock_message, quarantine_jobs
from rail.store.lease import Lease, claimable, for_update, still_held, take
from rail.store.model import BouncedRecipient, BounceReport, NewMessage
from rail.store.purge import mark_finished

__all__ = [
    "INBOUND_SCHEMA",
    "claim_webhooks",
    "inbound_status",
    "insert_inbound",
    "quarantine_inbound",
    "record_webhook",
    "webhook_counts",
]

# ``data`` last, as in ``messages``; jobs are found through a partial index over the pending
# ones in ``next_attempt_at`` order, like outbound recipients.
INBOUND_SCHEMA = """
CREATE TABLE inbound (
    id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    received_at REAL NOT NULL,
    subject TEXT NOT NULL,
    authentication TEXT NOT NULL,
    bounce_allowed INTEGER NOT NULL,
    peer TEXT NOT NULL,
    tls INTEGER NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE webhooks (
    message_id TEXT NOT NULL REFERENCES inbound (id) ON DELETE CASCADE,
    client TEXT NOT NULL,
    url TEXT NOT NULL,
    recipients TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'deferred', 'delivered', 'failed')),
    attempts INTEGER NOT NULL,
    next_attempt_at REAL,
    last_reply TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (message_id, client)
) WITHOUT ROWID;
CREATE INDEX webhooks_pending ON webhooks (next_attempt_at)
    WHERE status IN ('queued', 'deferred');
"""


def insert_inbound(
    connection: Connection, message: InboundMessage, lease: Lease | None = None
) -> None:
    """Insert ``message`` and one queued job per target (in the caller's transaction);
    with a ``lease``, the jobs are held by this node from the start: they are handed to its
    runner without a claim (:meth:`rail.jobs.runner.Runner.offer`)."""
    connection.execute(
        "INSERT INTO inbound (id, sender, received_at, subject, authentication,"
        " bounce_allowed, peer, tls, size, sha256, data)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            message.id,
            message.sender,
            message.received_at,
            message.subject,
            json.dumps(message.authentication, separators=(",", ":")),
            int(message.bounce_allowed),
            message.peer,
            int(message.tls),
            len(message.data),
            hashlib.sha256(message.data).hexdigest(),
            message.data,
        ),
    )
    connection.executemany(
        "INSERT INTO webhooks (message_id, client, url, recipients, status, attempts,"
        " next_attempt_at, updated_at, claimed_by, lease_until)"
        " VALUES (?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?)",
        [
            (
                message.id,
                target.client,
                target.url,
                json.dumps(list(target.recipients)),
                message.received_at,
                message.received_at,
                None if lease is None else lease.node,
                None if lease is None else lease.until,
            )
            for target in message.targets
        ],
    )
    if not message.targets:
        mark_finished(connection, "inbound", message.id, message.received_at)


def claim_webhooks(
    connection: Connection,
    now: float,
    limit: int,
    exclude: Collection[tuple[str, str]],
    lease: Lease | None = None,
) -> tuple[list[WebhookJob], dict[str, str]]:
    """Up to ``limit`` jobs due at ``now``, oldest due first, skipping ``exclude``; and the
    inbound messages among them that cannot be POSTed as stored, with the reason. Those
    give no job: the caller quarantines them. With a ``lease``, as
    :func:`rail.store.deliveries.claim_due`: only jobs no other node holds, taken under it."""
    free, params = claimable(lease)
    as_bytes = dialect_of(connection).as_bytes
    rows = connection.execute(
        f"SELECT message_id, {as_bytes.format('client')}, {as_bytes.format('url')},"  # noqa: S608
        f" {as_bytes.format('recipients')}, attempts FROM webhooks"
        " WHERE status IN ('queued', 'deferred') AND next_attempt_at <= ?"
        + free
        + " ORDER BY next_attempt_at LIMIT ?"
        + for_update(connection, lease),
        (now, *params, limit + len(exclude)),
    ).fetchall()
    jobs: list[WebhookJob] = []
    bad: dict[str, str] = {}
    messages: dict[str, _Inbound] = {}
    for message_id, raw_client, raw_url, raw_recipients, attempts in rows:
        if len(jobs) >= limit:
            break
        if message_id in bad:
            continue
        try:
            client = text(raw_client, "webhook client")
            if (message_id, client) in exclude:
                continue
            url = text(raw_url, "webhook url")
            recipients = _json(raw_recipients, "webhook recipients")
            tries = int(number(attempts, "webhook attempts"))
            if message_id not in messages:
                messages[message_id] = _read_inbound(connection, message_id)
        except UnreadableRowError as error:
            bad[message_id] = str(error)
            continue
        sender, subject, received_at, authentication, bounce_allowed, data = messages[message_id]
        jobs.append(
            WebhookJob(
                message_id=message_id,
                client=client,
                url=url,
                recipients=tuple(recipients),
                sender=sender,
                subject=subject,
                received_at=received_at,
                authentication=authentication,
                bounce_allowed=bounce_allowed,
                attempts=tries,
                data=data,
            )
        )
    jobs = [job for job in jobs if job.message_id not in bad]
    if lease is not None:
        keys = [(job.message_id, job.client) for job in jobs]
        take(connection, "webhooks", ("message_id", "client"), keys, lease)
    return jobs, bad


_Inbound = tuple[str, str, float, dict[str, Any], bool, bytes]


def _read_inbound(connection: Connection, message_id: str) -> _Inbound:
    """The fields and verified data of inbound ``message_id``; :class:`UnreadableRowError` if the
    row is missing or damaged."""
    as_bytes = dialect_of(connection).as_bytes
    sender, subject, received_at, authentication, bounce_allowed, data = verified_row(
        connection,
        "inbound",
        f"{as_bytes.format('sender')}, {as_bytes.format('subject')}, received_at,"
        f" {as_bytes.format('authentication')}, bounce_allowed",
        message_id,
    )
    document = _json(authentication, "authentication")
    if not isinstance(document, dict):
        raise UnreadableRowError("stored authentication is not a JSON object")
    return (
        text(sender, "sender"),
        text(subject, "subject"),
        number(received_at, "received_at"),
        document,
        bool(bounce_allowed),
        data,
    )


def _json(value: object, column: str) -> Any:
    try:
        return json.loads(text(value, column))
    except ValueError:
        raise UnreadableRowError(f"stored {column} is not JSON") from None


def quarantine_inbound(
    connection: Connection,
    message_id: str,
    reason: str,
    now: float,
    node: str | None = None,
) -> list[str]:
    """Make every pending webhook job of inbound ``message_id`` ``failed`` with
    ``reason`` (:func:`rail.store.jobends.quarantine_jobs`); the clients whose jobs were
    pending."""
    return [
        str(client)
        for client in quarantine_jobs(connection, "inbound", message_id, reason, now, node)
    ]


def record_webhook(
    connection: Connection,
    result: WebhookResult,
    dsn: DSNBuilder | None,
    subscriptions: Subscriptions = NO_SUBSCRIPTIONS,
    node: str | None = None,
) -> NewMessage | None:
    """Record one POST's outcome; on a final failure queue the DSN ``dsn`` makes, if the
    message allows one, and the ``inbound.failed`` event if ``subscriptions`` ask for it.
    Returns that DSN. A job already final is left alone (a late duplicate result cannot
    undo ``delivered``). Recording ends the job's lease; with leases (``node``), a job
    another node holds now raises :class:`LeaseLostError` before anything is written."""
    still_held(
        connection,
        "webhooks",
        ("message_id", "client"),
        [(result.message_id, result.client)],
        node,
    )
    # Two nodes ending a message's last two jobs at once: the second waits for the first
    # and sees its change, so one of them finishes the message (rail.store.db.Dialect).
    lock_message(connection, "inbound", result.message_id)
    updated = connection.execute(
        "UPDATE webhooks SET status = ?, attempts = attempts + 1, next_attempt_at = ?,"
        " last_reply = ?, updated_at = ?, claimed_by = NULL, lease_until = ?"
        " WHERE message_id = ? AND client = ? AND status IN ('queued', 'deferred')",
        (
            result.status,
            result.next_attempt_at if result.status == "deferred" else None,
            result.reply,
            result.attempted_at,
            result.attempted_at,
            result.message_id,
            result.client,
        ),
    ).rowcount
    if updated and not jobs_pending(connection, "inbound", result.message_id):
        mark_finished(connection, "inbound", result.message_id, result.attempted_at)
    if updated and result.status == "failed":
        inbound_failed_events(connection, result, subscriptions)
    if not updated or result.status != "failed" or dsn is None:
        return None
    row = connection.execute(
        "SELECT i.sender, i.received_at, i.bounce_allowed, i.data, w.recipients"
        " FROM inbound i JOIN webhooks w ON w.message_id = i.id"
        " WHERE i.id = ? AND w.client = ?",
        (result.message_id, result.client),
    ).fetchone()
    sender, received_at, bounce_allowed, data, recipients = row
    if not bounce_allowed:
        return None
    notification = dsn(
        BounceReport(
            message_id=result.message_id,
            client=result.client,
            sender=sender,
            received_at=float(received_at),
            data=stored_bytes(data),
            bounced=tuple(
                BouncedRecipient(address, result.reply, None, result.attempted_at)
                for address in json.loads(recipients)
            ),
        )
    )
    if notification is not None:
        insert_message(connection, notification)
    return notification


def inbound_status(connection: Connection, client: str, message_id: str) -> InboundStatus | None:
    """``client``'s job for ``message_id``, or None; never reads the message data."""
    row = connection.execute(
        "SELECT i.sender, i.subject, i.size, i.received_at, i.authentication, w.recipients,"
        " w.status, w.attempts, w.last_reply, w.next_attempt_at, w.updated_at,"
        " (SELECT body_purged_at FROM finished WHERE queue = 'inbound' AND id = i.id)"
        " FROM inbound i JOIN webhooks w ON w.message_id = i.id"
        " WHERE i.id = ? AND w.client = ?",
        (message_id, client),
    ).fetchone()
    if row is None:
        return None
    (
        sender,
        subject,
        size,
        received_at,
        authentication,
        recipients,
        status,
        attempts,
        last_reply,
        next_attempt_at,
        updated_at,
        body_purged_at,
    ) = row
    return InboundStatus(
        id=message_id,
        client=client,
        sender=sender,
        recipients=tuple(json.loads(recipients)),
        subject=subject,
        size=int(size),
        received_at=float(received_at),
        status=status,
        attempts=int(attempts),
        last_reply=last_reply,
        next_attempt_at=next_attempt_at,
        updated_at=float(updated_at),
        authentication=json.loads(authentication),
        body_purged_at=body_purged_at,
    )


def webhook_counts(connection: Connection) -> dict[str, int]:
    """Webhook jobs by status, every status present: read from the ``tally`` the triggers
    keep (:mod:`rail.store.purge`), a few rows whatever the spool holds."""
    counts = dict.fromkeys(("queued", "deferred", "delivered", "failed"), 0)
    for status, count in connection.execute(
        "SELECT status, sum(n) FROM tally WHERE queue = 'inbound' GROUP BY status"
    ):
        counts[status] = int(count)
    return counts
