"""Port 25 with forwarding routes: copies queued with the message, SRS bounces returned
or dropped, rate limits at RCPT, and the SPF/DMARC refusals that still apply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rail.config.schema import Inbound, InboundRoute
from rail.delivery.signing import Signer
from rail.forward.forwarding import Forwarding
from rail.forward.srs import SRS
from rail.inbound.recipients import RecipientTable
from rail.refusals import Refusals
from rail.smtp.inbound import InboundSession
from rail.smtp.server import RailESMTP
from rail.store.model import DeliveryJob, DueRecipient, NewMessage
from rail.testing import MemoryStore
from tests.forward.helpers import key_store
from tests.smtp.helpers import LIMITS
from tests.smtp.test_inbound import PASS, FakeVerifier

SECRET = b"0123456789abcdef0123456789abcdef"
BODY = b"From: <a@sender.example>\r\nSubject: hi\r\n\r\nhello\r\n"
ROUTES = (
    InboundRoute(match="alias@rail.test", forward=("bob@mailbox.example",)),
    InboundRoute(
        match="both@rail.test", client="app", forward=("bob@mailbox.example", "carol@x.example")
    ),
    InboundRoute(match="limited@rail.test", forward=("dan@mailbox.example",), forward_per_minute=2),
)
TABLE = RecipientTable(
    hostname="mx.rail.test",
    local_domains=frozenset({"rail.test"}),
    addresses={("hello", "rail.test"): "app"},
    webhooks={"app": "https://app.example/hook"},
    routes=ROUTES,
)


def _inline(f: Any, *args: Any) -> defer.Deferred[Any]:
    return defer.maybeDeferred(f, *args)


class ForwardSessionTestCase(SynchronousTestCase):
    settings = Inbound()

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_790_000_000)
        self.store = MemoryStore(self.clock)
        self.verifier = FakeVerifier()
        self.keys = key_store(Path(self.mktemp()), ["rail.test"], self.clock.seconds())
        self.srs = SRS(SECRET)
        self.refusals = Refusals(self.clock)
        self.forwarding = Forwarding(
            srs=self.srs,
            keys=self.keys,
            clock=self.clock,
            authserv_id="mx.rail.test",
            in_thread=_inline,
            refusals=self.refusals,
        )

    def submit(self, rcpts: tuple[bytes, ...], sender: bytes = b"a@sender.example") -> list[bytes]:
        session = InboundSession(
            store=self.store,
            verifier=self.verifier,
            recipients=lambda: TABLE,
            settings=self.settings,
            clock=self.clock,
            hostname="mx.rail.test",
            forwarding=self.forwarding,
        )
        transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
        protocol = RailESMTP(session, hostname="mx.rail.test", limits=LIMITS, clock=self.clock)
        protocol.makeConnection(transport)
        protocol.dataReceived(b"EHLO mail.sender.example\r\n")
        transport.clear()
        commands = b"MAIL FROM:<" + sender + b">\r\n"
        commands += b"".join(b"RCPT TO:<" + r + b">\r\n" for r in rcpts)
        protocol.dataReceived(commands + b"DATA\r\n" + BODY + b".\r\n")
        return [line for line in transport.value().split(b"\r\n") if line]

    def outbound(self) -> list[NewMessage]:
        return sorted(self.store.messages.values(), key=lambda m: m.client)


class ForwardTests(ForwardSessionTestCase):
    def test_forward_only_route(self) -> None:
        """Mail to a forwarding alias is accepted; the inbound record has no webhook job
        and one outbound copy is queued with it: SRS sender in the alias's domain, the
        route's targets, ARC set and Rail's Received on top of the original bytes."""
        replies = self.submit((b"alias@rail.test",))
        self.assertTrue(replies[-1].startswith(b"250 2.0.0"), replies)
        [inbound] = self.store.inbound.values()
        self.assertEqual(inbound.targets, ())
        [copy] = self.outbound()
        self.assertEqual(copy.client, "forward:alias@rail.test")
        self.assertEqual(copy.recipients, ("bob@mailbox.example",))
        self.assertTrue(copy.sender.startswith("SRS0="))
        self.assertTrue(copy.sender.endswith("@rail.test"))
        self.assertEqual(self.srs.reverse(copy.sender, self.clock.seconds()), "a@sender.example")
        self.assertTrue(copy.data.startswith(b"ARC-Seal: i=1; "))
        self.assertTrue(copy.data.endswith(b"\r\n" + BODY))
        self.assertIn(b"Received: from mail.sender.example", copy.data)
        self.assertNotIn(b"\r\nAuthentication-Results:", copy.data)
        self.assertEqual(inbound.forwards, (copy,))

    def test_client_and_forward(self) -> None:
        """A route with a client and forward addresses does both; a target that two
        aliases of one message forward to gets one copy."""
        self.submit((b"both@rail.test", b"alias@rail.test"))
        [inbound] = self.store.inbound.values()
        self.assertEqual([t.client for t in inbound.targets], ["app"])
        copies = self.outbound()
        self.assertEqual(
            [(c.client, c.recipients) for c in copies],
            [("forward:both@rail.test", ("bob@mailbox.example", "carol@x.example"))],
        )

    def test_null_sender_forwarded_null(self) -> None:
        """A bounce to a forwarding alias is forwarded with the null sender."""
        self.submit((b"alias@rail.test",), sender=b"")
        [copy] = self.outbound()
        self.assertEqual(copy.sender, "")

    def test_dmarc_reject_not_forwarded(self) -> None:
        """Mail that fails DMARC under p=reject is refused at SMTP time, forward
        routes included: nothing is stored, nothing is forwarded."""
        self.verifier.result = attrs.evolve(PASS, dmarc="fail", dmarc_policy="reject")
        replies = self.submit((b"alias@rail.test",))
        self.assertEqual(replies[-1], b"550 5.7.1 Rejected by DMARC policy")
        self.assertEqual((self.store.inbound, self.store.messages), ({}, {}))

    def test_spf_fail_not_forwarded(self) -> None:
        """SPF fail under spf_fail: reject is refused for forward routes too."""
        self.verifier.result = attrs.evolve(PASS, spf="fail")
        replies = self.submit((b"alias@rail.test",))
        self.assertEqual(replies[-1], b"550 5.7.23 SPF validation failed")
        self.assertEqual(self.store.messages, {})

    def test_rate_limit(self) -> None:
        """Past the route's per-minute limit RCPT is answered 451 4.7.0, logged and
        counted; the next minute it is accepted again."""
        for _ in range(2):
            self.assertTrue(self.submit((b"limited@rail.test",))[-1].startswith(b"250"))
        with capturedLogs() as logs:
            replies = self.submit((b"limited@rail.test",))
        self.assertIn(b"451 4.7.0 Too much mail for this address; try again later", replies)
        self.assertIn("forward rate limit", " ".join(str(e.get("log_format")) for e in logs))
        self.assertEqual(self.refusals.counts[("inbound", "forward_rate")], 1)
        self.assertEqual(len(self.outbound()), 2)
        self.clock.advance(60)
        self.assertTrue(self.submit((b"limited@rail.test",))[-1].startswith(b"250"))


class ReturnTests(ForwardSessionTestCase):
    def test_bounce_returned(self) -> None:
        """A bounce to a valid SRS address is accepted and queued to the original
        sender with the null sender, signed later for the SRS domain."""
        address = self.srs.forward("alice@sender.example", "rail.test", self.clock.seconds())
        replies = self.submit((address.encode(),), sender=b"")
        self.assertTrue(replies[-1].startswith(b"250 2.0.0"), replies)
        [returned] = self.outbound()
        self.assertEqual(returned.client, "srs-return:rail.test")
        self.assertEqual((returned.sender, returned.recipients), ("", ("alice@sender.example",)))
        self.assertTrue(returned.data.startswith(b"Received: "))
        self.assertTrue(returned.data.endswith(b"\r\n" + BODY))

    def test_forged_bounce_dropped(self) -> None:
        """A bounce to an SRS address with a bad hash is refused at RCPT (550 5.1.1),
        with a log line and a refusal count; nothing is stored."""
        forged = (
            "SRS0=AAAA=" + self.srs.forward("a@sender.example", "rail.test", 0).split("=", 2)[2]
        )
        with capturedLogs() as logs:
            replies = self.submit((forged.encode(),), sender=b"")
        self.assertIn(b"550 5.1.1 User unknown", replies)
        lines = [e for e in logs if "srs bounce dropped" in str(e.get("log_format"))]
        self.assertEqual([e["reason"] for e in lines], ["bad hash"])
        self.assertEqual(self.refusals.counts[("inbound", "srs_invalid")], 1)
        self.assertEqual(self.store.messages, {})

    def test_old_bounce_dropped(self) -> None:
        """A bounce to an SRS address older than 21 days is refused the same way."""
        address = self.srs.forward("alice@sender.example", "rail.test", self.clock.seconds())
        self.clock.advance(22 * 86400)
        with capturedLogs() as logs:
            self.submit((address.encode(),), sender=b"")
        lines = [e for e in logs if "srs bounce dropped" in str(e.get("log_format"))]
        self.assertEqual([e["reason"] for e in lines], ["too old"])


class SigningTests(ForwardSessionTestCase):
    def test_forwarded_signed_for_forwarding_domain(self) -> None:
        """Delivery signs a forwarded copy for the alias's domain (its From is someone
        else's), above the ARC set; the message itself is unchanged."""
        self.submit((b"alias@rail.test",))
        [copy] = self.outbound()
        job = DeliveryJob(
            message_id=copy.id,
            domain="mailbox.example",
            client=copy.client,
            sender=copy.sender,
            received_at=copy.received_at,
            smtputf8=False,
            eight_bit=False,
            recipients=(DueRecipient(0, "bob@mailbox.example", 0, None),),
            data=copy.data,
        )
        signed = Signer(self.keys, self.clock).prepare(job)
        self.assertTrue(signed.endswith(copy.data))
        signatures = signed[: -len(copy.data)]
        self.assertIn(b"DKIM-Signature:", signatures)
        self.assertIn(b"d=rail.test;", signatures.replace(b"\r\n\t", b" "))
        self.assertNotIn(b"d=sender.example", signatures)
