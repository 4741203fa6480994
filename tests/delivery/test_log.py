"""The delivery log: the exact lines the scheduler writes for each outcome.

The scheduler runs against MemoryStore, a Clock and scripted sessions (as in
test_scheduler), and ``capturedLogs`` collects what it logs in ``rail.delivery``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.decide import RetryPolicy
from rail.delivery.outcome import (
    MessageResult,
    OutboundMessage,
    RecipientResult,
    Reply,
    SessionError,
)
from rail.delivery.preparing import inline
from rail.delivery.resolve import Route, RouteError, RouteHost
from rail.delivery.scheduler import DeliveryLimits, Scheduler
from rail.store.model import DeliveryJob, NewMessage
from rail.testing import MemoryStore
from tests.delivery.test_scheduler import FakeSession, _dsn, _MidRandom, all_reply

_T0 = 1_800_000_000.0
_OK = Reply(250, "2.0.0", "ok")
_ATTEMPT_KEYS = [
    "msg_id",
    "client",
    "rcpt",
    "mx",
    "address",
    "tls",
    "result",
    "reply",
    "attempt",
    "delay",
    "duration",
    "next_attempt",
]
_FINAL_KEYS = ["msg_id", "client", "rcpt", "result", "reply", "attempts", "delay"]


_LEGACY = {"message", "time", "system", "format", "isError"}


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    """The event's own fields: not Twisted's ``log_*`` keys, Rail's ``rail_*`` keys or
    those that trial's legacy log observer adds to every event it sees."""
    return {
        k: v for k, v in event.items() if not k.startswith(("log_", "rail_")) and k not in _LEGACY
    }


class DeliveryLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(_T0)
        self.store = MemoryStore(self.clock)
        self.routes: dict[str, Route | RouteError] = {}
        self.refuse: set[str] = set()
        self.answer: Callable[[OutboundMessage], MessageResult | None] = all_reply(_OK)
        self.tls: str | None = "TLSv1.3"

    def _route(self, domain: str) -> Deferred[Route]:
        route = self.routes.get(
            domain, Route(hosts=(RouteHost(f"mx.{domain}", ("192.0.2.1", "2001:db8::1")),))
        )
        if isinstance(route, RouteError):
            return fail(route)
        return succeed(route)

    def _connect(self, address: str, host: str, tls: object = None) -> Deferred[FakeSession]:
        if address in self.refuse:
            return fail(SessionError(Reply(451, "4.4.1", "connection refused", remote=False)))
        session = FakeSession(lambda m: self.answer(m))
        session.tls_active = self.tls is not None
        session.tls_version = self.tls
        return succeed(session)

    def deliver(self, prepare: Callable[[DeliveryJob], bytes] = lambda job: job.data) -> Scheduler:
        scheduler = Scheduler(
            self.store,
            self.clock,
            route=self._route,
            connect=self._connect,  # type: ignore[arg-type]
            prepare=inline(prepare),
            dsn=_dsn,
            policy=RetryPolicy(schedule=(60.0, 300.0), max_age=3600.0),
            limits=DeliveryLimits(concurrency=10, per_destination=2),
            rng=_MidRandom(),
        )
        scheduler.start()
        return scheduler

    def accept(self, *recipients: str, received_at: float = _T0 - 2.5) -> str:
        message_id = f"M{len(self.store.messages):03d}"
        self.store.accept(
            NewMessage(
                id=message_id,
                client="app",
                sender="app@rail.example",
                recipients=recipients,
                data=b"Subject: secret body\r\n\r\nthe body\r\n",
                channel="api",
                received_at=received_at,
            )
        )
        return message_id

    def lines(self, events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
        return [
            _fields(e)
            for e in events
            if e.get("log_namespace") == "rail.delivery" and e.get("rail_event") == kind
        ]

    def test_sent(self) -> None:
        """A sent recipient has one attempt line (MX host, address, TLS version, reply,
        attempt 1, delay since acceptance) and one final line, in that order; each event
        has exactly the documented fields and its text is the same fields as key=value."""
        message_id = self.accept("a@one.example")
        with capturedLogs() as events:
            self.deliver()
        [attempt] = self.lines(events, "delivery.attempt")
        self.assertEqual(list(attempt), _ATTEMPT_KEYS)
        self.assertEqual(
            attempt,
            {
                "msg_id": message_id,
                "client": "app",
                "rcpt": "a@one.example",
                "mx": "mx.one.example",
                "address": "192.0.2.1",
                "tls": "TLSv1.3",
                "result": "sent",
                "reply": "250 2.0.0 ok",
                "attempt": 1,
                "delay": 2.5,
                "duration": 0.0,
                "next_attempt": None,
            },
        )
        [final] = self.lines(events, "delivery.final")
        self.assertEqual(list(final), _FINAL_KEYS)
        self.assertEqual(
            final,
            {
                "msg_id": message_id,
                "client": "app",
                "rcpt": "a@one.example",
                "result": "sent",
                "reply": "250 2.0.0 ok",
                "attempts": 1,
                "delay": 2.5,
            },
        )
        kinds = [e["rail_event"] for e in events if "rail_event" in e]
        self.assertEqual(kinds, ["delivery.attempt", "delivery.final"])
        [text] = [formatEvent(e) for e in events if e.get("rail_event") == "delivery.attempt"]
        self.assertEqual(
            text,
            f"delivery.attempt msg_id={message_id} client=app rcpt=a@one.example"
            " mx=mx.one.example address=192.0.2.1 tls=TLSv1.3 result=sent"
            ' reply="250 2.0.0 ok" attempt=1 delay=2.5 duration=0.0 next_attempt=-',
        )
        self.assertNotIn("the body", "".join(formatEvent(e) for e in events))

    def test_deferred_then_sent(self) -> None:
        """A 4xx gives an attempt line ``deferred`` with the next attempt's time and no
        final line; the retry's line counts attempt 2 and its delay from acceptance."""
        message_id = self.accept("a@one.example")
        self.answer = all_reply(Reply(451, "4.7.1", "greylisted"))
        with capturedLogs() as events:
            self.deliver()
        [attempt] = self.lines(events, "delivery.attempt")
        self.assertEqual(
            (attempt["result"], attempt["reply"], attempt["attempt"], attempt["next_attempt"]),
            ("deferred", "451 4.7.1 greylisted", 1, "2027-01-15T08:01:00Z"),
        )
        self.assertEqual(self.lines(events, "delivery.final"), [])
        self.answer = all_reply(_OK)
        with capturedLogs() as events:
            self.clock.advance(60)
        [attempt] = self.lines(events, "delivery.attempt")
        self.assertEqual(
            (attempt["msg_id"], attempt["result"], attempt["attempt"], attempt["delay"]),
            (message_id, "sent", 2, 62.5),
        )
        [final] = self.lines(events, "delivery.final")
        self.assertEqual((final["result"], final["attempts"]), ("sent", 2))

    def test_bounced_per_recipient(self) -> None:
        """A two-recipient transaction logs one attempt line per recipient, each with its
        own reply; the bounced one's final line is a warning, the sent one's info."""
        self.accept("a@one.example", "b@one.example")
        self.answer = lambda m: MessageResult(
            tuple(
                RecipientResult(r, Reply(550, "5.1.1", "no such user") if r[0] == "a" else _OK)
                for r in m.recipients
            )
        )
        with capturedLogs() as events:
            self.deliver()
        attempts = self.lines(events, "delivery.attempt")
        self.assertEqual(
            [(a["rcpt"], a["result"], a["reply"]) for a in attempts[:2]],
            [
                ("a@one.example", "bounced", "550 5.1.1 no such user"),
                ("b@one.example", "sent", "250 2.0.0 ok"),
            ],
        )
        finals = [
            (e["rcpt"], e["result"], e["log_level"])
            for e in events
            if e.get("rail_event") == "delivery.final" and e["msg_id"] == "M000"
        ]
        self.assertEqual(
            finals,
            [("a@one.example", "bounced", LogLevel.warn), ("b@one.example", "sent", LogLevel.info)],
        )

    def test_no_connection_and_no_route(self) -> None:
        """When every address refuses, the line names the last host and address tried and
        no TLS version; when routing fails, no host at all."""
        self.accept("a@one.example")
        self.accept("b@two.example")
        self.refuse = {"192.0.2.1", "2001:db8::1"}
        self.routes["two.example"] = RouteError(
            Reply(550, "5.1.2", "domain two.example does not exist", remote=False)
        )
        with capturedLogs() as events:
            self.deliver()
        by_rcpt = {a["rcpt"]: a for a in self.lines(events, "delivery.attempt")}
        one, two = by_rcpt["a@one.example"], by_rcpt["b@two.example"]
        self.assertEqual(
            (one["mx"], one["address"], one["tls"], one["result"], one["reply"]),
            ("mx.one.example", "2001:db8::1", None, "deferred", "451 4.4.1 connection refused"),
        )
        self.assertEqual(
            (two["mx"], two["address"], two["tls"], two["result"]),
            (None, None, None, "bounced"),
        )

    def test_plaintext_session(self) -> None:
        """A session without TLS is logged ``tls=none``."""
        self.accept("a@one.example")
        self.tls = None
        with capturedLogs() as events:
            self.deliver()
        [attempt] = self.lines(events, "delivery.attempt")
        self.assertEqual(attempt["tls"], "none")

    def test_quarantined(self) -> None:
        """A message the scheduler quarantines gets a final line ``failed`` per recipient
        it held, with the reply the store records, once the quarantine is on disk; no
        attempt line (nothing was sent)."""
        message_id = self.accept("a@one.example", "b@one.example")

        def prepare(job: DeliveryJob) -> bytes:
            raise RuntimeError("boom")

        with capturedLogs() as events:
            self.deliver(prepare)
        self.assertEqual(self.lines(events, "delivery.attempt"), [])
        reply = "quarantined: preparing the message failed (RuntimeError)"
        self.assertEqual(
            self.lines(events, "delivery.final"),
            [
                {
                    "msg_id": message_id,
                    "client": "app",
                    "rcpt": rcpt,
                    "result": "failed",
                    "reply": reply,
                    "attempts": 0,
                    "delay": 2.5,
                }
                for rcpt in ("a@one.example", "b@one.example")
            ],
        )
