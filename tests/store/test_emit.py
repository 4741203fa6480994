"""Events and suppressions written by the SQLite store with the outcomes they report.

Each test drives the real store (its writer thread and transactions) with the results a
delivery attempt or an inbound webhook records, and reads back the ``events`` and
``suppressions`` rows. Times come from a Clock.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from rail.events.model import EVENT_TYPES, Event
from rail.events.subscriptions import Subscription, Subscriptions
from rail.inbound.model import InboundMessage, WebhookResult, WebhookTarget
from rail.store import emit
from rail.store.ids import new_message_id
from rail.store.model import IdempotencyKey, JobResult, NewMessage, RecipientUpdate
from rail.store.schema import SCHEMA_VERSION, database_path, open_writable
from rail.store.sqlite import SQLiteStore
from tests.store.test_contract import open_postgres, open_sqlite, pg_sql
from tests.support.postgres import postgres_dsn

_T0 = 1_800_000_000.0
_EVERYTHING = Subscriptions({"app": Subscription(frozenset(EVENT_TYPES))})
_WHERE = {"mx": "mx.example.net", "address": "192.0.2.7", "tls": "TLSv1.3"}


def _message(
    *recipients: str, client: str = "app", sender: str = "app@rail.example", at: float = _T0
) -> NewMessage:
    return NewMessage(
        id=new_message_id(at),
        client=client,
        sender=sender,
        recipients=recipients,
        data=b"Subject: hi\r\n\r\nhello\r\n",
        channel="api",
        received_at=at,
    )


def _result(message: NewMessage, at: float, *updates: RecipientUpdate, **where: Any) -> JobResult:
    return JobResult(message.id, at, updates, **(where or _WHERE))


def _sent(idx: int = 0, reply: str = "250 2.0.0 queued as 1234") -> RecipientUpdate:
    return RecipientUpdate(idx, "sent", reply, remote_mta="mx.example.net")


def _deferred(idx: int, at: float, reply: str = "451 4.7.1 greylisted") -> RecipientUpdate:
    return RecipientUpdate(idx, "deferred", reply, "mx.example.net", next_attempt_at=at)


def _bounced(idx: int, reply: str, remote: bool = True) -> RecipientUpdate:
    return RecipientUpdate(idx, "bounced", reply, "mx.example.net" if remote else None)


class _StoreTest(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(_T0)
        self.directory = Path(self.mktemp()) / "queue"
        self.store: SQLiteStore = open_sqlite(self, self.directory)
        self.store.subscriptions = _EVERYTHING

    def _read(self, sql: str, *params: object) -> list[Any]:
        connection = sqlite3.connect(database_path(self.directory))
        try:
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()

    def events(self, *types: str) -> list[dict[str, Any]]:
        """The stored events (of ``types``, if given), in insertion order."""
        rows = self._read(
            "SELECT type, client, message_id, recipient, sandbox, created_at, details, status"
            " FROM events ORDER BY id"
        )
        found = [
            {
                "type": row[0],
                "client": row[1],
                "message_id": row[2],
                "recipient": row[3],
                "sandbox": bool(row[4]),
                "created_at": row[5],
                "details": json.loads(row[6]),
                "status": row[7],
            }
            for row in rows
        ]
        return [e for e in found if not types or e["type"] in types]

    def suppressions(self) -> list[tuple[Any, ...]]:
        return self._read(
            "SELECT client, address, reason, source, message_id, detail, created_at"
            " FROM suppressions ORDER BY address"
        )

    async def queued(self, message: NewMessage) -> NewMessage:
        await self.store.accept(message)
        return message


class AcceptedTests(_StoreTest):
    async def test_accepted(self) -> None:
        """An accepted message makes ``message.accepted`` with its sender, recipient count
        and channel, at its acceptance time, queued for dispatch."""
        message = await self.queued(_message("a@example.net", "b@example.org"))
        self.assertEqual(
            self.events(),
            [
                {
                    "type": "message.accepted",
                    "client": "app",
                    "message_id": message.id,
                    "recipient": None,
                    "sandbox": False,
                    "created_at": _T0,
                    "details": {"from": "app@rail.example", "recipients": 2, "channel": "api"},
                    "status": "queued",
                }
            ],
        )

    async def test_sandboxed_client(self) -> None:
        """A sandboxed client's message.accepted says ``sandbox``; another's does not."""
        self.store.use_sandboxed(lambda client: client == "app")
        self.store.subscriptions = Subscriptions(
            {
                "app": Subscription(frozenset(EVENT_TYPES)),
                "other": Subscription(frozenset(EVENT_TYPES)),
            }
        )
        await self.queued(_message("a@example.net"))
        await self.queued(_message("a@example.net", client="other", sender="o@rail.example"))
        self.assertEqual(
            [(e["client"], e["sandbox"]) for e in self.events()], [("app", True), ("other", False)]
        )

    async def test_replay_makes_no_second_event(self) -> None:
        """The same request_id replayed queues nothing, so it tells nothing either."""
        key = IdempotencyKey("req-1", "fingerprint")
        message = _message("a@example.net")
        await self.store.accept(message, key)
        await self.store.accept(_message("a@example.net", at=_T0 + 1), key)
        self.assertEqual([e["message_id"] for e in self.events()], [message.id])

    async def test_only_subscribers(self) -> None:
        """A client that did not subscribe, or not to this type, gets no row."""
        self.store.subscriptions = Subscriptions(
            {"app": Subscription(frozenset({"message.delivered"}))}
        )
        await self.queued(_message("a@example.net"))
        await self.queued(_message("a@example.net", client="other", sender="o@rail.example"))
        self.assertEqual(self.events(), [])


class DeliveryEventTests(_StoreTest):
    async def test_delivered(self) -> None:
        """A 2xx makes ``message.delivered`` for that recipient: where it went (MX, address,
        TLS version), the remote reply, the attempt number and the delay since acceptance."""
        message = await self.queued(_message("a@example.net", "b@example.net"))
        await self.store.record(_result(message, _T0 + 30, _deferred(1, _T0 + 90)))
        await self.store.record(_result(message, _T0 + 95.5, _sent(0), _sent(1)))
        delivered = self.events("message.delivered")
        self.assertEqual(
            [(e["recipient"], e["created_at"], e["details"]) for e in delivered],
            [
                (
                    "a@example.net",
                    _T0 + 95.5,
                    {**_WHERE, "reply": "250 2.0.0 queued as 1234", "attempt": 1, "delay": 95.5},
                ),
                (
                    "b@example.net",
                    _T0 + 95.5,
                    {**_WHERE, "reply": "250 2.0.0 queued as 1234", "attempt": 2, "delay": 95.5},
                ),
            ],
        )

    async def test_plaintext_and_unrouted(self) -> None:
        """Without TLS the ``tls`` detail is null; an attempt that reached no host (no
        route) has null ``mx``, ``address`` and ``tls``."""
        message = await self.queued(_message("a@example.net", "b@example.net"))
        await self.store.record(
            _result(message, _T0 + 1, _sent(0), mx="mx.example.net", address="192.0.2.7")
        )
        await self.store.record(
            JobResult(
                message.id,
                _T0 + 2,
                (RecipientUpdate(1, "deferred", "451 4.4.3 no DNS", None, _T0 + 60),),
            )
        )
        details = [e["details"] for e in self.events("message.delivered", "message.deferred")]
        self.assertEqual(
            [(d["mx"], d["address"], d["tls"]) for d in details],
            [("mx.example.net", "192.0.2.7", None), (None, None, None)],
        )

    async def test_deferred(self) -> None:
        """A temporary failure makes ``message.deferred`` with the reply, the attempt
        number and the next attempt's time (RFC 3339 UTC)."""
        message = await self.queued(_message("a@example.net"))
        await self.store.record(_result(message, _T0 + 5, _deferred(0, _T0 + 65)))
        (deferred,) = self.events("message.deferred")
        self.assertEqual(deferred["recipient"], "a@example.net")
        self.assertEqual(
            deferred["details"],
            {
                **_WHERE,
                "reply": "451 4.7.1 greylisted",
                "attempt": 1,
                "next_attempt": "2027-01-15T08:01:05Z",
            },
        )

    async def test_deferred_while_held(self) -> None:
        """A deferral of a message put on hold meanwhile has no next attempt to tell."""
        message = await self.queued(_message("a@example.net"))
        await self.store.hold(message.id, _T0 + 1, "ops", None)
        await self.store.record(_result(message, _T0 + 5, _deferred(0, _T0 + 65)))
        (deferred,) = self.events("message.deferred")
        self.assertIsNone(deferred["details"]["next_attempt"])

    async def test_deferred_once_per_recipient_per_hour(self) -> None:
        """Deferrals of one recipient tell once per hour: the first at once, the next only
        when the last told one is an hour old; another recipient has its own hour."""
        message = await self.queued(_message("a@example.net", "b@example.net"))
        told = []
        # Retries every 10 minutes for two hours; b is first tried at 25 minutes.
        for step in range(13):
            self.clock.advance(600 if step else 0)
            now = self.clock.seconds()
            updates = [_deferred(0, now + 600)]
            if step >= 3:
                updates.append(_deferred(1, now + 600))
            await self.store.record(_result(message, now, *updates))
        for event in self.events("message.deferred"):
            told.append(
                (event["recipient"], event["created_at"] - _T0, event["details"]["attempt"])
            )
        self.assertEqual(
            told,
            [
                ("a@example.net", 0, 1),
                ("b@example.net", 1800, 1),
                ("a@example.net", 3600, 7),
                ("b@example.net", 5400, 7),
                ("a@example.net", 7200, 13),
            ],
        )

    async def test_deferred_per_message_cap(self) -> None:
        """One message makes at most DEFERRED_PER_MESSAGE deferral events in an hour,
        however many recipients defer; an hour later the others tell."""
        count = emit.DEFERRED_PER_MESSAGE + 20
        message = await self.queued(_message(*(f"r{i}@example.net" for i in range(count))))
        now = self.clock.seconds()
        await self.store.record(
            _result(message, now, *(_deferred(i, now + 3700) for i in range(count)))
        )
        self.assertEqual(len(self.events("message.deferred")), emit.DEFERRED_PER_MESSAGE)
        self.clock.advance(3601)
        now = self.clock.seconds()
        await self.store.record(
            _result(message, now, *(_deferred(i, now + 3700) for i in range(count)))
        )
        later = [e for e in self.events("message.deferred") if e["created_at"] == now]
        self.assertEqual(len(later), emit.DEFERRED_PER_MESSAGE)
        self.assertEqual(later[0]["recipient"], "r0@example.net")

    async def test_repeated_result_tells_once(self) -> None:
        """A result recorded twice (a retried write) changes no recipient the second time
        and makes no second event."""
        message = await self.queued(_message("a@example.net"))
        result = _result(message, _T0 + 1, _sent(0))
        await self.store.record(result)
        await self.store.record(result)
        self.assertEqual(len(self.events("message.delivered")), 1)

    async def test_subscription_filters_types(self) -> None:
        """A client subscribed to bounces only gets no delivered or deferred events."""
        self.store.subscriptions = Subscriptions(
            {"app": Subscription(frozenset({"message.bounced"}))}
        )
        message = await self.queued(_message("a@example.net", "b@example.net", "c@x.example"))
        await self.store.record(
            _result(
                message,
                _T0 + 1,
                _sent(0),
                _deferred(1, _T0 + 60),
                _bounced(2, "550 5.1.1 no such user"),
            )
        )
        self.assertEqual([e["type"] for e in self.events()], ["message.bounced"])

    async def test_sandbox_result_tells_through_its_own_events(self) -> None:
        """A result that brings its own events (a sandboxed client's) gets no second
        ``message.delivered`` from the store: only its own, marked sandbox."""
        message = await self.queued(_message("a@example.net"))
        own = Event(
            "message.delivered", "app", message.id, "a@example.net", {"mx": None}, sandbox=True
        )
        await self.store.record(
            JobResult(message.id, _T0 + 1, (_sent(0, "250 2.0.0 sandbox"),), events=(own,))
        )
        (delivered,) = self.events("message.delivered")
        self.assertEqual((delivered["sandbox"], delivered["details"]), (True, {"mx": None}))

    async def test_null_sender_tells_nothing(self) -> None:
        """A message with a null reverse-path is Rail's own DSN: its outcomes make no
        events and suppress nothing."""
        message = await self.queued(_message("app@rail.example", sender=""))
        await self.store.record(_result(message, _T0 + 1, _bounced(0, "550 5.1.1 no such user")))
        self.assertEqual(self.events("message.bounced"), [])
        self.assertEqual(self.suppressions(), [])


class BounceTests(_StoreTest):
    async def test_hard_rcpt_bounce_suppresses_at_once(self) -> None:
        """A 5.1.1 at RCPT makes ``message.bounced`` at once, while a sibling is still
        deferred (no DSN yet), and lists the address for the client in the same write."""
        message = await self.queued(_message("Gone@Example.net", "slow@example.net"))
        dsn = await self.store.record(
            _result(
                message,
                _T0 + 3,
                _bounced(0, "550 5.1.1 <Gone@Example.net>: user unknown"),
                _deferred(1, _T0 + 60),
            )
        )
        self.assertIsNone(dsn)
        (bounced,) = self.events("message.bounced")
        self.assertEqual(bounced["recipient"], "Gone@Example.net")
        self.assertEqual(
            bounced["details"],
            {
                "source": "smtp",
                "classification": "hard",
                "status": "5.1.1",
                "reply": "550 5.1.1 <Gone@Example.net>: user unknown",
                "mx": "mx.example.net",
                "suppressed": True,
            },
        )
        self.assertEqual(
            self.suppressions(),
            [
                (
                    "app",
                    "gone@example.net",
                    "hard_bounce",
                    "rcpt",
                    message.id,
                    "550 5.1.1 <Gone@Example.net>: user unknown",
                    _T0 + 3,
                )
            ],
        )

    async def test_soft_and_policy_bounces_do_not_suppress(self) -> None:
        """A full mailbox (5.2.2) and a policy block (5.7.1) are classified and told, but
        the addresses stay off the suppression list."""
        message = await self.queued(_message("full@example.net", "blocked@example.net"))
        await self.store.record(
            _result(
                message,
                _T0 + 3,
                _bounced(0, "552 5.2.2 mailbox full"),
                _bounced(1, "550 5.7.1 message rejected as spam"),
            )
        )
        self.assertEqual(
            [
                (e["details"]["classification"], e["details"]["suppressed"])
                for e in self.events("message.bounced")
            ],
            [("soft", False), ("policy", False)],
        )
        self.assertEqual(self.suppressions(), [])

    async def test_local_hard_verdict_suppresses_as_route(self) -> None:
        """Rail's own permanent verdict (a null MX) is a hard bounce with no MX; the
        suppression's source says routing decided."""
        message = await self.queued(_message("a@nomail.example"))
        await self.store.record(
            JobResult(
                message.id,
                _T0 + 1,
                (_bounced(0, "556 5.1.10 domain nomail.example accepts no mail", remote=False),),
            )
        )
        (bounced,) = self.events("message.bounced")
        self.assertEqual(
            (bounced["details"]["mx"], bounced["details"]["classification"]), (None, "hard")
        )
        self.assertEqual([row[3] for row in self.suppressions()], ["route"])

    async def test_already_suppressed(self) -> None:
        """Two messages queued to one address before it bounced: the first bounce lists
        it, the second keeps that first entry and says it did not put it there."""
        first = await self.queued(_message("gone@example.net"))
        second = await self.queued(_message("gone@example.net", at=_T0 + 10))
        await self.store.record(_result(first, _T0 + 11, _bounced(0, "550 5.1.1 unknown user")))
        await self.store.record(_result(second, _T0 + 12, _bounced(0, "550 5.1.1 unknown")))
        self.assertEqual(
            [e["details"]["suppressed"] for e in self.events("message.bounced")], [True, False]
        )
        self.assertEqual([row[4] for row in self.suppressions()], [first.id])

    async def test_suppression_without_subscription(self) -> None:
        """The suppression list does not depend on events: a client subscribed to nothing
        still has its hard bounces listed."""
        self.store.subscriptions = Subscriptions()
        message = await self.queued(_message("gone@example.net"))
        await self.store.record(_result(message, _T0 + 1, _bounced(0, "550 5.1.1 unknown")))
        self.assertEqual(self.events(), [])
        self.assertEqual([row[1] for row in self.suppressions()], ["gone@example.net"])

    async def test_expired(self) -> None:
        """A recipient that reaches max_age makes ``message.expired`` (attempts, the last
        attempt's own reply) and ``message.bounced`` with source ``expired``; an expiry
        never suppresses."""
        message = await self.queued(_message("slow@example.net"))
        await self.store.record(_result(message, _T0 + 60, _deferred(0, _T0 + 120)))
        expiry = "554 5.4.7 delivery time expired; last attempt: 451 4.7.1 greylisted"
        update = RecipientUpdate(0, "bounced", expiry, None, expired_after="451 4.7.1 greylisted")
        await self.store.record(_result(message, _T0 + 120, update))
        self.assertEqual(
            [(e["type"], e["details"]) for e in self.events("message.expired", "message.bounced")],
            [
                ("message.expired", {"attempts": 2, "last_reply": "451 4.7.1 greylisted"}),
                (
                    "message.bounced",
                    {
                        "source": "expired",
                        "classification": "soft",
                        "status": "5.4.7",
                        "reply": expiry,
                        "mx": "mx.example.net",
                        "suppressed": False,
                    },
                ),
            ],
        )
        self.assertEqual(self.suppressions(), [])


class OperatorEventTests(_StoreTest):
    """An operator's bounce or delete of a message tells its client, per recipient it
    ended: without it an app would wait for ever on mail an operator ended."""

    async def test_bounce(self) -> None:
        """``message.bounced`` with source ``operator`` for the recipients still pending
        (not the one already delivered); it suppresses nothing."""
        message = await self.queued(_message("ok@example.net", "a@example.net", "b@example.net"))
        await self.store.record(_result(message, _T0 + 1, _sent(0)))
        outcome = await self.store.bounce(message.id, _T0 + 5, "ops", "spam trap", None)
        self.assertEqual(outcome, "done")
        reply = "550 5.0.0 bounced by the operator (ops): spam trap"
        self.assertEqual(
            [
                (e["recipient"], e["created_at"], e["details"])
                for e in self.events("message.bounced")
            ],
            [
                (
                    address,
                    _T0 + 5,
                    {
                        "source": "operator",
                        "classification": "unknown",
                        "status": "5.0.0",
                        "reply": reply,
                        "mx": None,
                        "suppressed": False,
                    },
                )
                for address in ("a@example.net", "b@example.net")
            ],
        )
        self.assertEqual(self.suppressions(), [])

    async def test_delete(self) -> None:
        """``message.deleted`` with the operator's reason for each pending recipient."""
        message = await self.queued(_message("a@example.net", "b@example.net"))
        await self.store.record(_result(message, _T0 + 1, _deferred(1, _T0 + 60)))
        self.assertEqual(await self.store.delete(message.id, _T0 + 5, "ops", "sent twice"), "done")
        self.assertEqual(
            [(e["recipient"], e["details"]) for e in self.events("message.deleted")],
            [
                ("a@example.net", {"reason": "sent twice"}),
                ("b@example.net", {"reason": "sent twice"}),
            ],
        )

    async def test_only_what_the_client_wants(self) -> None:
        """A client subscribed to bounces alone hears nothing of a delete; nothing is
        told twice when nothing was pending any more."""
        self.store.subscriptions = Subscriptions(
            {"app": Subscription(frozenset({"message.bounced"}))}
        )
        deleted = await self.queued(_message("a@example.net"))
        bounced = await self.queued(_message("b@example.net", at=_T0 + 1))
        await self.store.delete(deleted.id, _T0 + 5, "ops", "no")
        await self.store.bounce(bounced.id, _T0 + 5, "ops", None, None)
        self.assertEqual(
            await self.store.bounce(bounced.id, _T0 + 6, "ops", None, None), "not_pending"
        )
        self.assertEqual(
            [(e["type"], e["message_id"]) for e in self.events()], [("message.bounced", bounced.id)]
        )


class FailedTests(_StoreTest):
    async def test_quarantined_when_preparing_failed(self) -> None:
        """A message quarantined because preparing it raised or overran tells its client
        ``message.failed`` for each recipient that was still pending (a recipient already
        delivered is not told again)."""
        message = await self.queued(_message("a@example.net", "b@example.net", "c@example.net"))
        await self.store.record(_result(message, _T0 + 1, _sent(0), _deferred(1, _T0 + 60)))
        reason = "preparing the message took over 30s"
        self.assertTrue(await self.store.quarantine(message.id, "timeout", reason, _T0 + 70))
        self.assertEqual(
            [
                (e["recipient"], e["created_at"], e["details"])
                for e in self.events("message.failed")
            ],
            [
                (address, _T0 + 70, {"kind": "timeout", "reason": reason})
                for address in ("b@example.net", "c@example.net")
            ],
        )

    async def test_not_for_a_damaged_row_nor_twice(self) -> None:
        """A ``corrupt`` quarantine tells nothing (the damaged row cannot be trusted to
        name its client); a second quarantine of a message with nothing pending tells
        nothing more; a client not subscribed to the type hears nothing."""
        corrupt = await self.queued(_message("a@example.net"))
        self.assertTrue(await self.store.quarantine(corrupt.id, "corrupt", "bad sha", _T0 + 1))
        failed = await self.queued(_message("b@example.net", at=_T0 + 1))
        self.assertTrue(await self.store.quarantine(failed.id, "error", "ValueError", _T0 + 2))
        self.assertFalse(await self.store.quarantine(failed.id, "error", "ValueError", _T0 + 3))
        self.store.subscriptions = Subscriptions(
            {"app": Subscription(frozenset({"message.bounced"}))}
        )
        unwanted = await self.queued(_message("c@example.net", at=_T0 + 2))
        self.assertTrue(await self.store.quarantine(unwanted.id, "error", "ValueError", _T0 + 4))
        self.assertEqual(
            [(e["message_id"], e["recipient"]) for e in self.events("message.failed")],
            [(failed.id, "b@example.net")],
        )


class InboundFailedTests(_StoreTest):
    async def _inbound(self) -> InboundMessage:
        message = InboundMessage(
            id=new_message_id(_T0),
            sender="someone@example.org",
            targets=(
                WebhookTarget("app", "https://app.example/hook", ("in@rail.example",)),
                WebhookTarget("other", "https://other.example/hook", ("o@rail.example",)),
            ),
            data=b"Subject: in\r\n\r\nhi\r\n",
            received_at=_T0,
            subject="in",
            authentication={},
            bounce_allowed=False,
        )
        await self.store.accept_inbound(message)
        return message

    async def test_gave_up(self) -> None:
        """A webhook job that fails for good makes ``inbound.failed`` for its client with
        the attempts and the last reply; a retry tells nothing."""
        message = await self._inbound()
        await self.store.record_webhook(
            WebhookResult(message.id, "app", _T0 + 5, "deferred", "HTTP 503", _T0 + 60)
        )
        await self.store.record_webhook(
            WebhookResult(message.id, "app", _T0 + 60, "failed", "HTTP 410")
        )
        self.assertEqual(
            [(e["type"], e["client"], e["message_id"], e["details"]) for e in self.events()],
            [
                (
                    "inbound.failed",
                    "app",
                    message.id,
                    {"attempts": 2, "last_reply": "HTTP 410"},
                )
            ],
        )

    async def test_other_clients_job(self) -> None:
        """Only the client whose job failed hears of it, and only if subscribed."""
        message = await self._inbound()
        await self.store.record_webhook(
            WebhookResult(message.id, "other", _T0 + 5, "failed", "HTTP 404")
        )
        self.assertEqual(self.events(), [])

    async def test_quarantined(self) -> None:
        """A message quarantined because a POST could not be built tells each subscribed
        client whose job it ended, with the quarantine's reply; a damaged row tells
        nobody (it cannot be trusted to name the clients)."""
        message = await self._inbound()
        await self.store.record_webhook(
            WebhookResult(message.id, "app", _T0 + 5, "deferred", "HTTP 503", _T0 + 60)
        )
        reason = "building the webhook failed (ValueError)"
        self.assertTrue(await self.store.quarantine_inbound(message.id, "error", reason, _T0 + 9))
        damaged = await self._inbound()
        self.assertTrue(await self.store.quarantine_inbound(damaged.id, "corrupt", "bad", _T0 + 9))
        self.assertEqual(
            [(e["type"], e["client"], e["message_id"], e["details"]) for e in self.events()],
            [
                (
                    "inbound.failed",
                    "app",
                    message.id,
                    {"attempts": 1, "last_reply": "quarantined: " + reason},
                )
            ],
        )


class MigrationTests(TestCase):
    def test_from_version_12(self) -> None:
        """A version 12 queue gains the deferral events' index and keeps its events."""
        from tests.store.oldschemas import schema_v12

        directory = Path(self.mktemp())
        directory.mkdir()
        old = sqlite3.connect(database_path(directory))
        old.executescript(schema_v12())
        old.execute(
            "INSERT INTO events VALUES ('E', 'app', 'message.deferred', 'M', 'a@x', 0, 1.0,"
            " '{}', 'queued', 0, 1.0, NULL, 1.0)"
        )
        old.commit()
        old.execute("PRAGMA user_version=12")
        old.close()
        connection = open_writable(directory)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)
        self.assertEqual(connection.execute("SELECT id FROM events").fetchall(), [("E",)])
        plan = connection.execute(
            "EXPLAIN QUERY PLAN SELECT recipient FROM events WHERE type = 'message.deferred'"
            " AND message_id = 'M' AND created_at > 0"
        ).fetchall()
        self.assertIn("events_deferred", " ".join(str(row[-1]) for row in plan))


class _OnPostgres:
    """Runs a _StoreTest class's tests on the PostgreSQL store."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(_T0)
        self.dsn = postgres_dsn(self)  # type: ignore[arg-type]
        self.store = open_postgres(self, self.dsn)  # type: ignore[arg-type]
        self.store.subscriptions = _EVERYTHING

    def _read(self, sql: str, *params: object) -> list[Any]:
        return pg_sql(self.dsn, sql, *params)


class PostgresAcceptedTests(_OnPostgres, AcceptedTests):
    pass


class PostgresDeliveryEventTests(_OnPostgres, DeliveryEventTests):
    pass


class PostgresBounceTests(_OnPostgres, BounceTests):
    pass


class PostgresInboundFailedTests(_OnPostgres, InboundFailedTests):
    pass


class PostgresOperatorEventTests(_OnPostgres, OperatorEventTests):
    pass


class PostgresFailedTests(_OnPostgres, FailedTests):
    pass


class ParseReplyTests(TestCase):
    def test_parse(self) -> None:
        """A stored reply splits into code, enhanced status and text; text alone has none."""
        self.assertEqual(emit.parse_reply("550 5.1.1 no such user"), (550, "5.1.1", "no such user"))
        self.assertEqual(emit.parse_reply("550 no such user"), (550, None, "no such user"))
        self.assertEqual(emit.parse_reply("421"), (421, None, ""))
        self.assertEqual(emit.parse_reply("timeout"), (None, None, "timeout"))
