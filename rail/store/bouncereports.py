"""Asynchronous bounces and complaints in the SQLite queue: matched, recorded, suppressed.

A report that came back to a message's signed return path (:mod:`rail.bounces.verp`) is
recorded here, on the writer thread, in one transaction with what follows from it: a
``message.bounced`` (source ``dsn``) or ``message.complained`` event for the message's
own client, and a suppression entry for a hard bounce or a complaint. Only the message
the return path names is looked at, and only its recipients: a report about an address
the message was not sent to changes nothing.

The recipient's status is left as it is. A recipient that a remote server accepted
(``sent``) and bounced later was delivered to that server; as with Postmark or SES, the
later bounce is an event and a row in ``async_reports`` (shown by
``GET /api/v1/messages/{id}``), not a change of the delivery's status. A second report
about the same recipient (a retransmitted DSN, a second complaint) finds its row and
changes nothing more: reports are idempotent.
"""

from __future__ import annotations

import re
from typing import Final, Literal

import attrs

from rail.bounces.reports import DeliveryReport, FeedbackReport, RecipientReport
from rail.events.classify import classify
from rail.events.model import Event
from rail.events.subscriptions import Subscriptions
from rail.store.db import Connection
from rail.store.events import insert_events
from rail.store.model import RecipientStatus
from rail.store.suppressions import Suppression, normalize, suppress, suppressed

__all__ = [
    "ASYNC_REPORTS_SCHEMA",
    "COMPLAINT_TYPES",
    "AsyncReport",
    "Noted",
    "attach_reports",
    "read_async_reports",
    "record_report",
]

ASYNC_REPORTS_SCHEMA = """
CREATE TABLE async_reports (
    message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('bounce', 'complaint')),
    status TEXT,
    classification TEXT,
    detail TEXT,
    reporter TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (message_id, idx, kind)
) WITHOUT ROWID;
"""

COMPLAINT_TYPES: Final = frozenset({"abuse", "fraud", "virus"})
"""ARF feedback types that are a complaint about the mail (RFC 5965 §7.3); ``not-spam``,
``auth-failure`` (RFC 6591) and ``other`` are not, and are ignored."""

Outcome = Literal[
    "recorded",
    "duplicate",
    "unknown-message",
    "not-a-recipient",
    "no-recipient",
    "delayed",
    "not-failed",
    "not-a-complaint",
]

_CODE = re.compile(r"^\s*([245]\d\d)\b")


@attrs.frozen
class Noted:
    """What became of one entry of a report, for the log line: ``recipient`` is the
    address as the report wrote it (None when it named none)."""

    recipient: str | None
    outcome: Outcome
    client: str | None = None
    suppressed: bool = False


@attrs.frozen
class AsyncReport:
    """A bounce or complaint recorded for one recipient, as the status API shows it."""

    kind: Literal["bounce", "complaint"]
    status: str | None
    classification: str | None
    detail: str | None
    reporter: str | None
    created_at: float


def record_report(
    connection: Connection,
    message_id: str,
    report: DeliveryReport | FeedbackReport,
    now: float,
    subscriptions: Subscriptions,
) -> list[Noted]:
    """Record ``report`` about ``message_id`` (in the caller's transaction); what became
    of each of its entries. Costs one look-up of the message and its recipients, and a
    few primary-key writes per entry."""
    row = connection.execute("SELECT client FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        return [Noted(None, "unknown-message")]
    client = str(row[0])
    recipients: dict[str, tuple[int, str]] = {}
    for idx, address in connection.execute(
        "SELECT idx, address FROM recipients WHERE message_id = ? ORDER BY idx", (message_id,)
    ):
        recipients.setdefault(normalize(address), (int(idx), str(address)))
    if isinstance(report, DeliveryReport):
        return [
            _bounce(connection, client, message_id, recipients, entry, report, now, subscriptions)
            for entry in report.recipients
        ]
    return _complaint(connection, client, message_id, recipients, report, now, subscriptions)


def _find(recipients: dict[str, tuple[int, str]], *addresses: str | None) -> tuple[int, str] | None:
    for address in addresses:
        if address is not None and normalize(address) in recipients:
            return recipients[normalize(address)]
    return None


def _bounce(
    connection: Connection,
    client: str,
    message_id: str,
    recipients: dict[str, tuple[int, str]],
    entry: RecipientReport,
    report: DeliveryReport,
    now: float,
    subscriptions: Subscriptions,
) -> Noted:
    named = entry.final_recipient or entry.original_recipient
    if entry.action == "delayed":
        return Noted(named, "delayed", client)
    if entry.action != "failed":
        return Noted(named, "not-failed", client)
    found = _find(recipients, entry.final_recipient, entry.original_recipient)
    if found is None:
        return Noted(named, "not-a-recipient", client)
    idx, address = found
    text = entry.diagnostic or ""
    code = _CODE.match(text)
    classification = classify(int(code.group(1)) if code else None, entry.status, text)
    if not _note(
        connection, message_id, idx, "bounce", entry.status, classification, text,
        entry.remote_mta or report.reporting_mta, now,
    ):  # fmt: skip
        return Noted(named, "duplicate", client)
    listed = classification == "hard" and _suppress(
        connection, client, address, "hard_bounce", "dsn", message_id, text or entry.status, now
    )
    event = Event(
        "message.bounced",
        client,
        message_id,
        address,
        {
            "source": "dsn",
            "classification": classification,
            "status": entry.status,
            "reply": text,
            "mx": entry.remote_mta,
            "suppressed": listed,
            "reporting_mta": report.reporting_mta,
        },
    )
    insert_events(connection, [event], now, subscriptions)
    return Noted(named, "recorded", client, listed)


def _complaint(
    connection: Connection,
    client: str,
    message_id: str,
    recipients: dict[str, tuple[int, str]],
    report: FeedbackReport,
    now: float,
    subscriptions: Subscriptions,
) -> list[Noted]:
    if report.feedback_type not in COMPLAINT_TYPES:
        return [Noted(None, "not-a-complaint", client)]
    if report.recipients:
        named: list[tuple[str | None, tuple[int, str] | None]] = [
            (address, _find(recipients, address)) for address in report.recipients
        ]
    elif len(recipients) == 1:
        # Reporters often redact the recipient; a message to one address is about it.
        named = [(None, next(iter(recipients.values())))]
    else:
        return [Noted(None, "no-recipient", client)]
    noted = []
    for written, found in named:
        if found is None:
            noted.append(Noted(written, "not-a-recipient", client))
            continue
        idx, address = found
        reporter = report.reporting_mta or report.user_agent
        if not _note(
            connection, message_id, idx, "complaint", None, None, report.feedback_type,
            reporter, now,
        ):  # fmt: skip
            noted.append(Noted(written or address, "duplicate", client))
            continue
        listed = _suppress(
            connection, client, address, "complaint", "arf", message_id, report.feedback_type, now
        )
        event = Event(
            "message.complained",
            client,
            message_id,
            address,
            {
                "feedback_type": report.feedback_type,
                "user_agent": report.user_agent,
                "reporting_mta": report.reporting_mta,
                "arrival_date": report.arrival_date,
                "suppressed": listed,
            },
        )
        insert_events(connection, [event], now, subscriptions)
        noted.append(Noted(written or address, "recorded", client, listed))
    return noted


def _note(
    connection: Connection,
    message_id: str,
    idx: int,
    kind: str,
    status: str | None,
    classification: str | None,
    detail: str,
    reporter: str | None,
    now: float,
) -> bool:
    """Whether this is the first report of ``kind`` about the recipient."""
    return (
        connection.execute(
            "INSERT INTO async_reports (message_id, idx, kind, status,"
            " classification, detail, reporter, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (message_id, idx, kind) DO NOTHING",
            (message_id, idx, kind, status, classification, detail, reporter, now),
        ).rowcount
        > 0
    )


def _suppress(
    connection: Connection,
    client: str,
    address: str,
    reason: Literal["hard_bounce", "complaint"],
    source: str,
    message_id: str,
    detail: str | None,
    now: float,
) -> bool:
    """List ``address`` for ``client``; whether this put it there (it may be listed)."""
    if suppressed(connection, client, [address]):
        return False
    entry = Suppression(client, address, reason, source, now, message_id, detail)
    suppress(connection, [entry])
    return True


def read_async_reports(connection: Connection, message_id: str) -> dict[int, list[AsyncReport]]:
    """The reports recorded about ``message_id``'s recipients, by recipient index."""
    found: dict[int, list[AsyncReport]] = {}
    for idx, kind, status, classification, detail, reporter, created_at in connection.execute(
        "SELECT idx, kind, status, classification, detail, reporter, created_at"
        " FROM async_reports WHERE message_id = ? ORDER BY idx, kind",
        (message_id,),
    ):
        found.setdefault(int(idx), []).append(
            AsyncReport(kind, status, classification, detail, reporter, created_at)
        )
    return found


def attach_reports(
    connection: Connection, message_id: str, recipients: tuple[RecipientStatus, ...]
) -> tuple[RecipientStatus, ...]:
    """``recipients`` (in index order) with the reports recorded about each: one indexed
    read, for the status answer."""
    found = read_async_reports(connection, message_id)
    if not found:
        return recipients
    return tuple(
        attrs.evolve(r, reports=tuple(found.get(idx, ()))) for idx, r in enumerate(recipients)
    )
