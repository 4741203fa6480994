"""Asynchronous bounces and complaints recorded against the message their return path names."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from rail.bounces.reports import DeliveryReport, FeedbackReport, RecipientReport
from rail.events.model import EVENT_TYPES
from rail.events.subscriptions import Subscription, Subscriptions
from rail.store import suppressions as sup
from rail.store.bouncereports import read_async_reports, record_report
from rail.store.deliveries import insert_message
from rail.store.schema import open_writable
from tests.store.test_contract import make_message, open_sqlite

_ALL = Subscriptions(
    {
        "alice": Subscription(frozenset(EVENT_TYPES)),
        "mallory": Subscription(frozenset(EVENT_TYPES)),
    }
)
_NOW = 1_800_000_100.0


def _failed(
    address: str, status: str = "5.1.1", text: str = "550 5.1.1 user unknown"
) -> RecipientReport:
    return RecipientReport(address, None, "failed", status, text, "mx.dest.example")


def _dsn(*entries: RecipientReport) -> DeliveryReport:
    return DeliveryReport("mx.dest.example", entries)


def _arf(*recipients: str, feedback_type: str = "abuse") -> FeedbackReport:
    return FeedbackReport(
        feedback_type=feedback_type,
        user_agent="FBL/1.0",
        version="1",
        recipients=recipients,
        arrival_date="Thu, 8 Mar 2005 14:00:00 EDT",
        reporting_mta="fbl.mailbox.example",
    )


class RecordReportTests(TestCase):
    def setUp(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir()
        self.connection = open_writable(directory)
        self.addCleanup(self.connection.close)
        self.message = make_message(recipients=("Bob@dest.example", "carol@dest.example"))
        insert_message(self.connection, self.message)
        # The recipients were delivered: the remote accepted, then bounced later.
        self.connection.execute("UPDATE recipients SET status = 'sent'")

    def events(self) -> list[tuple[Any, ...]]:
        return [
            (client, kind, message_id, recipient, json.loads(details))
            for client, kind, message_id, recipient, details in self.connection.execute(
                "SELECT client, type, message_id, recipient, details FROM events ORDER BY id"
            )
        ]

    def record(
        self, report: DeliveryReport | FeedbackReport, message_id: str | None = None
    ) -> list[Any]:
        return record_report(self.connection, message_id or self.message.id, report, _NOW, _ALL)

    def test_hard_bounce(self) -> None:
        """A failed 5.1.1 for a recipient (any case) records message.bounced (source dsn,
        hard, suppressed) for the message's client, a hard_bounce suppression from the
        dsn, and the report row; the recipient stays sent."""
        (noted,) = self.record(_dsn(_failed("bob@DEST.example")))
        self.assertEqual(
            (noted.outcome, noted.client, noted.suppressed), ("recorded", "alice", True)
        )
        self.assertEqual(
            self.events(),
            [
                (
                    "alice",
                    "message.bounced",
                    self.message.id,
                    "Bob@dest.example",
                    {
                        "source": "dsn",
                        "classification": "hard",
                        "status": "5.1.1",
                        "reply": "550 5.1.1 user unknown",
                        "mx": "mx.dest.example",
                        "suppressed": True,
                        "reporting_mta": "mx.dest.example",
                    },
                )
            ],
        )
        entry = sup.suppressed(self.connection, "alice", ["bob@dest.example"])["bob@dest.example"]
        self.assertEqual(
            (entry.reason, entry.source, entry.message_id), ("hard_bounce", "dsn", self.message.id)
        )
        self.assertEqual(
            self.connection.execute("SELECT status FROM recipients ORDER BY idx").fetchall(),
            [("sent",), ("sent",)],
        )
        (report,) = read_async_reports(self.connection, self.message.id)[0]
        self.assertEqual(
            (report.kind, report.status, report.classification), ("bounce", "5.1.1", "hard")
        )

    def test_duplicate_is_idempotent(self) -> None:
        """The same report again records nothing more."""
        self.record(_dsn(_failed("bob@dest.example")))
        (noted,) = self.record(_dsn(_failed("bob@dest.example")))
        self.assertEqual(noted.outcome, "duplicate")
        self.assertEqual(len(self.events()), 1)

    def test_soft_bounce_is_not_suppressed(self) -> None:
        """A full mailbox (5.2.2) is a soft bounce: event, no suppression."""
        (noted,) = self.record(_dsn(_failed("carol@dest.example", "5.2.2", "552 5.2.2 full")))
        self.assertEqual((noted.outcome, noted.suppressed), ("recorded", False))
        self.assertEqual(self.events()[0][4]["classification"], "soft")
        self.assertFalse(self.events()[0][4]["suppressed"])
        self.assertEqual(sup.suppressed(self.connection, "alice", ["carol@dest.example"]), {})

    def test_ignored_entries(self) -> None:
        """Delayed and delivered entries, an address the message was not sent to, and a
        message that does not exist change nothing."""
        entries = (
            RecipientReport("bob@dest.example", None, "delayed", "4.4.1"),
            RecipientReport("bob@dest.example", None, "delivered", "2.0.0"),
            _failed("stranger@dest.example"),
        )
        self.assertEqual(
            [n.outcome for n in self.record(_dsn(*entries))],
            ["delayed", "not-failed", "not-a-recipient"],
        )
        other = make_message(recipients=("x@y.example",))
        self.assertEqual(
            [n.outcome for n in self.record(_dsn(_failed("x@y.example")), other.id)],
            ["unknown-message"],
        )
        self.assertEqual(self.events(), [])
        self.assertEqual(
            self.connection.execute("SELECT count(*) FROM suppressions").fetchone(), (0,)
        )

    def test_events_go_to_the_messages_client_only(self) -> None:
        """A report about another client's message lists and tells that client only."""
        mallory = make_message(client="mallory", recipients=("bob@dest.example",))
        insert_message(self.connection, mallory)
        self.record(_dsn(_failed("bob@dest.example")), mallory.id)
        self.assertEqual([e[0] for e in self.events()], ["mallory"])
        self.assertEqual(sup.suppressed(self.connection, "alice", ["bob@dest.example"]), {})

    def test_complaint(self) -> None:
        """An abuse report for a recipient: message.complained and a complaint suppression
        from the arf; again: duplicate."""
        (noted,) = self.record(_arf("carol@dest.example"))
        self.assertEqual((noted.outcome, noted.suppressed), ("recorded", True))
        (event,) = self.events()
        self.assertEqual(event[1:4], ("message.complained", self.message.id, "carol@dest.example"))
        self.assertEqual(
            event[4],
            {
                "feedback_type": "abuse",
                "user_agent": "FBL/1.0",
                "reporting_mta": "fbl.mailbox.example",
                "arrival_date": "Thu, 8 Mar 2005 14:00:00 EDT",
                "suppressed": True,
            },
        )
        entry = sup.suppressed(self.connection, "alice", ["carol@dest.example"])[
            "carol@dest.example"
        ]
        self.assertEqual((entry.reason, entry.source), ("complaint", "arf"))
        self.assertEqual(self.record(_arf("carol@dest.example"))[0].outcome, "duplicate")

    def test_redacted_complaint(self) -> None:
        """A complaint naming nobody is about a one-recipient message's recipient, and
        ignored for a message with several; not-spam is no complaint."""
        self.assertEqual([n.outcome for n in self.record(_arf())], ["no-recipient"])
        single = make_message(recipients=("dave@dest.example",))
        insert_message(self.connection, single)
        self.assertEqual([n.outcome for n in self.record(_arf(), single.id)], ["recorded"])
        self.assertEqual(
            [n.outcome for n in self.record(_arf("carol@dest.example", feedback_type="not-spam"))],
            ["not-a-complaint"],
        )
        self.assertEqual([e[3] for e in self.events()], ["dave@dest.example"])

    def test_unsubscribed_client_gets_no_event_but_the_suppression(self) -> None:
        """Events follow subscriptions; the suppression is made regardless."""
        record_report(
            self.connection,
            self.message.id,
            _dsn(_failed("bob@dest.example")),
            _NOW,
            Subscriptions(),
        )
        self.assertEqual(self.events(), [])
        self.assertIn(
            "bob@dest.example", sup.suppressed(self.connection, "alice", ["bob@dest.example"])
        )


class StoreTests(TestCase):
    async def test_record_report_through_the_writer(self) -> None:
        """SQLiteStore.record_report commits the report, its event and its suppression
        in one writer transaction; the writer's subscriptions decide the events; the
        status answer shows the report on its recipient, whose status stays."""
        store = open_sqlite(self)
        store._writer.subscriptions = _ALL
        message = make_message(recipients=("bob@dest.example",))
        await store.accept(message)
        (noted,) = await store.record_report(message.id, _dsn(_failed("bob@dest.example")), _NOW)
        self.assertEqual(noted.outcome, "recorded")
        status = await store.status(message.client, message.id)
        (recipient,) = status.recipients
        self.assertEqual(recipient.status, "queued")  # a later report changes no status
        self.assertEqual(
            [(r.kind, r.status, r.classification, r.reporter) for r in recipient.reports],
            [("bounce", "5.1.1", "hard", "mx.dest.example")],
        )
        await store.close()
        connection = sqlite3.connect(store.directory / "queue.sqlite3")
        self.addCleanup(connection.close)
        self.assertEqual(
            connection.execute(
                "SELECT type, recipient FROM events WHERE type != 'message.accepted'"
            ).fetchall(),
            [("message.bounced", "bob@dest.example")],
        )
        self.assertEqual(
            connection.execute("SELECT reason, source FROM suppressions").fetchall(),
            [("hard_bounce", "dsn")],
        )
