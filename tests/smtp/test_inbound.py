"""Port 25 sessions: routing, relay refusals, TLS policy, authentication verdicts, spool."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rail.config.schema import Inbound
from rail.inbound.model import Authentication, InboundMessage, WebhookTarget
from rail.inbound.recipients import RecipientTable
from rail.mail.headers import parse_header_section
from rail.smtp.inbound import InboundSession
from rail.smtp.server import RailESMTP
from rail.store.model import Accepted, QueueFullError, StoreUnavailableError
from rail.testing import MemoryStore
from tests.smtp.helpers import LIMITS

LOCAL_DOMAINS = frozenset({"rail.test", "other.test"})
TABLE = RecipientTable(
    hostname="mx.rail.test",
    local_domains=LOCAL_DOMAINS,
    addresses={("hello", "rail.test"): "app", ("billing", "other.test"): "billing"},
    webhooks={"app": "https://app.example/hook", "billing": "https://billing.example/hook"},
    postmaster="billing",
)

PASS = Authentication(
    spf="pass",
    spf_scope="mailfrom",
    spf_domain="sender.example",
    dkim=(),
    dmarc="pass",
    from_domain="sender.example",
)

BODY = b"From: <a@sender.example>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\nhello\r\n"


class FakeVerifier:
    """Answers every message with ``result`` (an Authentication, an exception, or a
    Deferred the test fires); records what it was asked."""

    def __init__(self) -> None:
        self.result: Any = PASS
        self.calls: list[tuple[str, str, str, bytes]] = []

    def verify(self, peer_ip: str, helo: str, sender: str, data: bytes) -> Any:
        self.calls.append((peer_ip, helo, sender, data))
        if isinstance(self.result, Exception):
            return defer.fail(self.result)
        if isinstance(self.result, defer.Deferred):
            return self.result
        return defer.succeed(self.result)


class SlowStore(MemoryStore):
    """A MemoryStore whose accept_inbound waits until the test fires it."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.waiting: list[tuple[InboundMessage, defer.Deferred[Accepted]]] = []

    def accept_inbound(self, message: InboundMessage) -> defer.Deferred[Accepted]:
        d: defer.Deferred[Accepted] = defer.Deferred()
        self.waiting.append((message, d))
        return d


class InboundTestCase(SynchronousTestCase):
    peer = "192.0.2.7"
    settings = Inbound()

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_790_000_000)
        self.store = self.make_store()
        self.verifier = FakeVerifier()
        self.table = TABLE
        self.connect()

    def make_store(self) -> MemoryStore:
        return MemoryStore(self.clock)

    def connect(self, settings: Inbound | None = None) -> None:
        self.session = InboundSession(
            store=self.store,
            verifier=self.verifier,
            recipients=lambda: self.table,
            settings=settings or self.settings,
            clock=self.clock,
            hostname="mx.rail.test",
        )
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", self.peer, 40000))
        self.protocol = RailESMTP(
            self.session, hostname="mx.rail.test", limits=LIMITS, clock=self.clock
        )
        self.protocol.makeConnection(self.transport)
        self.transport.clear()

    def send(self, data: bytes) -> list[bytes]:
        self.transport.clear()
        self.protocol.dataReceived(data)
        return [line for line in self.transport.value().split(b"\r\n") if line]

    def ehlo(self) -> None:
        self.send(b"EHLO mail.sender.example\r\n")

    def submit(
        self, rcpts: tuple[bytes, ...] = (b"hello@rail.test",), sender: bytes = b"a@sender.example"
    ) -> list[bytes]:
        self.ehlo()
        commands = b"MAIL FROM:<" + sender + b">\r\n"
        commands += b"".join(b"RCPT TO:<" + r + b">\r\n" for r in rcpts)
        return self.send(commands + b"DATA\r\n" + BODY + b".\r\n")

    def only_message(self) -> InboundMessage:
        [message] = self.store.inbound.values()
        return message


class AcceptTests(InboundTestCase):
    def test_accepted_and_stored(self) -> None:
        """A message for a routed recipient is spooled; 250 names its id; the stored
        fields are the envelope, the decoded subject and the authentication results."""
        replies = self.submit()
        message = self.only_message()
        self.assertEqual(replies[-1], b"250 2.0.0 Ok: queued as " + message.id.encode())
        self.assertEqual(len(message.id), 26)
        self.assertEqual(message.sender, "a@sender.example")
        self.assertEqual(
            message.targets,
            (WebhookTarget("app", "https://app.example/hook", ("hello@rail.test",)),),
        )
        self.assertEqual(message.subject, "café")
        self.assertEqual(message.authentication, PASS.as_json())
        self.assertTrue(message.bounce_allowed)
        self.assertEqual(message.peer, self.peer)
        self.assertFalse(message.tls)
        self.assertEqual(message.received_at, self.clock.seconds())
        self.assertEqual(
            self.verifier.calls, [(self.peer, "mail.sender.example", "a@sender.example", BODY)]
        )

    def test_stored_bytes(self) -> None:
        """Received first, then Authentication-Results, then the message unchanged."""
        self.submit()
        message = self.only_message()
        section = parse_header_section(message.data)
        names = [name for name, _ in section.fields]
        self.assertEqual(names[:4], ["received", "authentication-results", "from", "subject"])
        received = section.values("received")[0]
        self.assertTrue(received.startswith("from mail.sender.example ([192.0.2.7])"))
        self.assertIn(f"by mx.rail.test (Rail) with ESMTP id {message.id}", received)
        self.assertIn("for <hello@rail.test>;", received)
        self.assertIn("mx.rail.test;", section.values("authentication-results")[0])
        self.assertIn("spf=pass smtp.mailfrom=sender.example", message.data.decode())
        self.assertTrue(message.data.endswith(b"\r\n" + BODY))

    def test_own_results_removed(self) -> None:
        """An Authentication-Results field with Rail's authserv-id from outside is a
        forgery: removed; others are kept. The verifier saw the message as sent."""
        forged = b"Authentication-Results: mx.rail.test; spf=pass; dmarc=pass\r\n"
        other = b"Authentication-Results: mx.elsewhere.example; spf=fail\r\n"
        self.ehlo()
        self.send(
            b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<hello@rail.test>\r\nDATA\r\n"
            + forged
            + other
            + BODY
            + b".\r\n"
        )
        data = self.only_message().data
        self.assertNotIn(forged, data)
        self.assertIn(other + BODY, data)
        self.assertEqual(data.count(b"Authentication-Results: mx.rail.test;"), 1)
        self.assertIn(forged, self.verifier.calls[0][3])

    def test_targets_per_client(self) -> None:
        """One webhook target per client, recipients in RCPT order; no ``for`` in
        Received with several recipients."""
        self.submit(rcpts=(b"hello@rail.test", b"billing@other.test", b"postmaster@rail.test"))
        message = self.only_message()
        self.assertEqual(
            message.targets,
            (
                WebhookTarget("app", "https://app.example/hook", ("hello@rail.test",)),
                WebhookTarget(
                    "billing",
                    "https://billing.example/hook",
                    ("billing@other.test", "postmaster@rail.test"),
                ),
            ),
        )
        self.assertNotIn(b"\tfor <", message.data.split(b"\r\n\r\n")[0])

    def test_null_sender(self) -> None:
        """The empty reverse-path (bounces) is accepted; such mail never bounces."""
        replies = self.submit(sender=b"")
        self.assertTrue(replies[-1].startswith(b"250 2.0.0 Ok: queued as "))
        message = self.only_message()
        self.assertEqual(message.sender, "")
        self.assertFalse(message.bounce_allowed)
        self.assertEqual(self.verifier.calls[0][2], "")

    def test_postmaster_everywhere(self) -> None:
        """postmaster@ every local domain and the bare ``<postmaster>`` are accepted."""
        self.ehlo()
        replies = self.send(
            b"MAIL FROM:<a@sender.example>\r\n"
            b"RCPT TO:<postmaster@rail.test>\r\n"
            b"RCPT TO:<PostMaster@OTHER.test>\r\n"
            b"RCPT TO:<Postmaster>\r\n"
        )
        self.assertEqual(replies, [b"250 2.1.0 Sender ok"] + [b"250 2.1.5 Recipient ok"] * 3)

    def test_logged(self) -> None:
        """Each accepted message is logged with msg_id, peer, sender and clients."""
        with capturedLogs() as events:
            self.submit(rcpts=(b"hello@rail.test", b"billing@other.test"))
        message = self.only_message()
        [event] = [e for e in events if e.get("msg_id") == message.id]
        self.assertEqual(event["peer"], self.peer)
        self.assertEqual(event["sender"], "a@sender.example")
        self.assertEqual(event["clients"], "app,billing")

    def test_reply_waits_for_spool(self) -> None:
        """250 is sent only when accept_inbound fires (the spool has fsynced)."""
        store = SlowStore(self.clock)
        self.store = store
        self.connect()
        replies = self.submit()
        self.assertEqual(replies[-1], b"354 End data with <CR><LF>.<CR><LF>")
        [(message, d)] = store.waiting
        self.transport.clear()
        d.callback(Accepted(message.id, 1))
        self.assertEqual(
            self.transport.value(), b"250 2.0.0 Ok: queued as " + message.id.encode() + b"\r\n"
        )


class RefusalTests(InboundTestCase):
    peer = "127.0.0.1"  # loopback is not trusted either

    def rcpt(self, address: bytes) -> bytes:
        self.ehlo()
        self.send(b"RSET\r\nMAIL FROM:<a@sender.example>\r\n")
        [reply] = self.send(b"RCPT TO:" + address + b"\r\n")
        return reply

    def test_relay_attempts(self) -> None:
        """Relay tricks and non-local domains are all refused 550 5.7.1; nothing is
        stored, even from a loopback peer."""
        attempts = [
            b"<user%external.example@rail.test>",
            b"<external.example!user@rail.test>",
            b'<"user@external.example"@rail.test>',
            b"<@rail.test:user@external.example>",
            b"<@rail.test,@other.test:user@external.example>",
            b"<user@[127.0.0.1]>",
            b"<user@[IPv6:::1]>",
            b"<user@external.example>",
            b"<hello@rail.test.external.example>",
        ]
        for address in attempts:
            with self.subTest(address=address):
                self.connect()
                self.assertEqual(self.rcpt(address), b"550 5.7.1 Relay access denied")
                self.assertEqual(self.send(b"DATA\r\n"), [b"503 5.5.1 Send RCPT first"])
        self.assertEqual(self.store.inbound, {})

    def test_unknown_user(self) -> None:
        """A local domain without a route: 550 5.1.1."""
        self.assertEqual(self.rcpt(b"<nobody@rail.test>"), b"550 5.1.1 User unknown")
        self.assertEqual(self.rcpt(b"<Hello@rail.test>"), b"550 5.1.1 User unknown")

    def test_route_without_webhook(self) -> None:
        """A route to a client that cannot take mail: 550 5.1.1, and logged."""
        self.table = attrs.evolve(TABLE, webhooks={"app": "https://app.example/hook"})
        with capturedLogs() as events:
            reply = self.rcpt(b"<billing@other.test>")
        self.assertEqual(reply, b"550 5.1.1 User unknown")
        [event] = [e for e in events if e.get("reason") == "no-webhook"]
        self.assertEqual(event["client"], "billing")

    def test_some_recipients_refused(self) -> None:
        """Refused recipients are left out; the others get the message."""
        self.ehlo()
        replies = self.send(
            b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<a@external.example>\r\n"
            b"RCPT TO:<hello@rail.test>\r\nDATA\r\n" + BODY + b".\r\n"
        )
        self.assertEqual(replies[1], b"550 5.7.1 Relay access denied")
        self.assertTrue(replies[-1].startswith(b"250 "))
        self.assertEqual(self.only_message().targets[0].recipients, ("hello@rail.test",))


class TLSPolicyTests(InboundTestCase):
    settings = Inbound(require_tls=True)

    def test_mail_before_starttls(self) -> None:
        """require_tls: MAIL without TLS gets 530 5.7.0 and nothing is stored."""
        replies = self.submit()
        self.assertEqual(replies[0], b"530 5.7.0 Must issue a STARTTLS command first")
        self.assertEqual(self.store.inbound, {})

    def test_mail_after_tls(self) -> None:
        """With TLS up, mail is accepted and Received says ESMTPS."""
        self.protocol.handshakeCompleted()
        replies = self.submit()
        self.assertTrue(replies[-1].startswith(b"250 2.0.0 Ok: queued as "))
        message = self.only_message()
        self.assertTrue(message.tls)
        self.assertIn(b" with ESMTPS id ", message.data)


class VerdictTests(InboundTestCase):
    def test_spf_fail_rejected(self) -> None:
        """SPF fail with spf_fail: reject: 550 5.7.23, nothing stored."""
        self.verifier.result = attrs.evolve(PASS, spf="fail")
        replies = self.submit()
        self.assertEqual(replies[-1], b"550 5.7.23 SPF validation failed")
        self.assertEqual(self.store.inbound, {})

    def test_spf_fail_tagged(self) -> None:
        """SPF fail with spf_fail: tag: stored, tagged, never bounced."""
        self.connect(Inbound(spf_fail="tag"))
        self.verifier.result = attrs.evolve(PASS, spf="fail")
        replies = self.submit()
        self.assertTrue(replies[-1].startswith(b"250 "))
        message = self.only_message()
        self.assertIn(b"spf=fail", message.data)
        self.assertEqual(message.authentication["spf"]["result"], "fail")
        self.assertFalse(message.bounce_allowed)

    def test_dmarc_reject(self) -> None:
        """DMARC fail under p=reject with dmarc: enforce: 550 5.7.1."""
        self.verifier.result = attrs.evolve(PASS, dmarc="fail", dmarc_policy="reject")
        replies = self.submit()
        self.assertEqual(replies[-1], b"550 5.7.1 Rejected by DMARC policy")
        self.assertEqual(self.store.inbound, {})

    def test_dmarc_reject_tagged(self) -> None:
        """dmarc: tag accepts a p=reject failure."""
        self.connect(Inbound(dmarc="tag"))
        self.verifier.result = attrs.evolve(PASS, dmarc="fail", dmarc_policy="reject")
        self.assertTrue(self.submit()[-1].startswith(b"250 "))

    def test_dmarc_quarantine(self) -> None:
        """p=quarantine is accepted and tagged; no bounce."""
        self.verifier.result = attrs.evolve(PASS, dmarc="fail", dmarc_policy="quarantine")
        replies = self.submit()
        self.assertTrue(replies[-1].startswith(b"250 "))
        message = self.only_message()
        self.assertIn(b"dmarc=fail", message.data)
        self.assertEqual(message.authentication["dmarc"]["policy"], "quarantine")
        self.assertFalse(message.bounce_allowed)


class FailureTests(InboundTestCase):
    def test_queue_full(self) -> None:
        """A full spool: 452 4.3.1 (try later)."""
        self.store.full = True
        self.assertEqual(
            self.submit()[-1], b"452 4.3.1 Insufficient system storage; try again later"
        )

    def test_store_unavailable(self) -> None:
        """A broken spool: 451 4.3.0, never 5xx."""
        self.store.fail_next = StoreUnavailableError("disk gone")
        with capturedLogs() as events:
            reply = self.submit()[-1]
        self.assertEqual(reply, b"451 4.3.0 Requested action aborted: local error in processing")
        self.assertTrue(any(e["log_level"] == LogLevel.error for e in events))

    def test_store_bug(self) -> None:
        """An unexpected store error is logged as a failure and answered 451 4.3.0."""
        self.store.fail_next = RuntimeError("bug")
        reply = self.submit()[-1]
        self.assertEqual(reply, b"451 4.3.0 Requested action aborted: local error in processing")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_queue_full_exception(self) -> None:
        """QueueFullError raised by the store maps to 452 4.3.1."""
        self.store.fail_next = QueueFullError("full")
        self.assertTrue(self.submit()[-1].startswith(b"452 4.3.1 "))

    def test_verifier_failure(self) -> None:
        """A failed verification is temporary: 451 4.4.3, nothing stored."""
        self.verifier.result = RuntimeError("resolver exploded")
        replies = self.submit()
        self.assertEqual(
            replies[-1], b"451 4.4.3 Temporary failure checking the sender; try again later"
        )
        self.assertEqual(self.store.inbound, {})

    def test_verifier_timeout(self) -> None:
        """A verification that never ends is cut off: 451 4.4.3; nothing left pending."""
        self.verifier.result = defer.Deferred()
        self.submit()
        self.transport.clear()
        self.clock.advance(120)
        self.assertEqual(
            self.transport.value(),
            b"451 4.4.3 Temporary failure checking the sender; try again later\r\n",
        )
        self.assertEqual(self.store.inbound, {})
        # The session carries on.
        self.verifier.result = PASS
        self.assertTrue(self.submit()[-1].startswith(b"250 "))
