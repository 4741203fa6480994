"""Port 465 and the per-client rate limits: 452 4.7.0 at MAIL FROM and RCPT TO."""

from __future__ import annotations

from OpenSSL import crypto
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rail.config.schema import ClientLimits
from rail.policy.rates import ClientRates
from rail.refusals import Refusals
from rail.smtp.server import RailESMTP
from rail.smtp.submission import SubmissionSession
from rail.testing import MemoryStore
from tests.pki.helpers import issue_client, make_ca
from tests.smtp.helpers import LIMITS
from tests.smtp.test_submission import SENDERS, _TLSTransport

BODY = b"From: noreply@ataca.io\r\n\r\nhi\r\n.\r\n"


class SubmissionRateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_789_999_200)
        self.store = MemoryStore(self.clock)
        self.limits = ClientLimits(messages_per_minute=2, recipients_per_day=3)
        self.rates = ClientRates(self.clock, lambda client: self.limits)
        self.refusals = Refusals(self.clock)
        self.accepted: list[tuple[float, int]] = []
        certificate, _ = issue_client(make_ca(), name="myapp", emails=SENDERS)
        self.certificate = crypto.X509.from_cryptography(certificate)
        self.transport, self.protocol = self.connect()

    def connect(self) -> tuple[_TLSTransport, RailESMTP]:
        transport = _TLSTransport(self.certificate)
        session = SubmissionSession(
            self.store,
            self.clock,
            "mx.rail.test",
            refusals=self.refusals,
            rates=self.rates,
            count_accepted=lambda now, count: self.accepted.append((now, count)),
        )
        protocol = RailESMTP(session, hostname="mx.rail.test", limits=LIMITS, clock=self.clock)
        protocol.makeConnection(transport)
        protocol.handshakeCompleted()
        protocol.dataReceived(b"EHLO app.example\r\n")
        self.addCleanup(protocol.connectionLost, None)
        return transport, protocol

    def send(self, data: bytes) -> list[bytes]:
        self.transport.clear()
        self.protocol.dataReceived(data)
        return [line for line in self.transport.value().split(b"\r\n") if line]

    def test_messages_per_minute_at_mail_from(self) -> None:
        """Two messages pass; the third MAIL FROM is 452 4.7.0 naming the limit and the
        wait, counted as a refusal; once the minute has moved on, mail passes again."""
        for _ in range(2):
            replies = self.send(
                b"MAIL FROM:<noreply@ataca.io>\r\nRCPT TO:<a@dest.example>\r\nDATA\r\n" + BODY
            )
            self.assertTrue(replies[-1].startswith(b"250 2.0.0 Ok: queued"), replies)
        replies = self.send(b"MAIL FROM:<noreply@ataca.io>\r\n")
        self.assertEqual(
            replies,
            [b"452 4.7.0 message rate limit (messages_per_minute) reached; try again in 60s"],
        )
        self.assertEqual(self.refusals.counts, {("submission", "messages_per_minute"): 1})
        self.clock.advance(60)
        self.assertEqual(self.send(b"MAIL FROM:<noreply@ataca.io>\r\n"), [b"250 2.1.0 Sender ok"])

    def test_recipients_per_day_at_rcpt(self) -> None:
        """Recipients per day are refused at the RCPT TO that would pass the limit, counting
        the transaction's earlier recipients and accepted messages; the accepted ones are
        delivered."""
        self.send(b"MAIL FROM:<noreply@ataca.io>\r\nRCPT TO:<a@dest.example>\r\nDATA\r\n" + BODY)
        replies = self.send(
            b"MAIL FROM:<noreply@ataca.io>\r\nRCPT TO:<b@dest.example>\r\n"
            b"RCPT TO:<c@dest.example>\r\nRCPT TO:<d@dest.example>\r\n"
        )
        self.assertEqual(replies[1:3], [b"250 2.1.5 Recipient ok"] * 2)
        self.assertEqual(
            replies[3],
            b"452 4.7.0 recipient rate limit (recipients_per_day) reached; try again in 86400s",
        )
        replies = self.send(b"DATA\r\n" + BODY)
        self.assertTrue(replies[-1].startswith(b"250 2.0.0"))
        self.assertEqual(
            sorted(m.recipients for m in self.store.messages.values()),
            [("a@dest.example",), ("b@dest.example", "c@dest.example")],
        )

    def test_sender_refusal_comes_first(self) -> None:
        """An unauthorized sender is refused as such, not as rate limited."""
        self.limits = ClientLimits(messages_per_minute=0)
        replies = self.send(b"MAIL FROM:<other@ataca.io>\r\n")
        self.assertTrue(replies[0].startswith(b"550 5.7.1"), replies)

    def test_accepted_messages_counted(self) -> None:
        """Each message the store accepted is counted once, at the time the store
        answered (the acceptance chart's feed); a refused one is not."""
        start = self.clock.seconds()
        self.send(b"MAIL FROM:<noreply@ataca.io>\r\nRCPT TO:<a@dest.example>\r\nDATA\r\n" + BODY)
        self.clock.advance(5)
        self.send(b"MAIL FROM:<noreply@ataca.io>\r\nRCPT TO:<b@dest.example>\r\nDATA\r\n" + BODY)
        self.send(b"MAIL FROM:<noreply@ataca.io>\r\n")  # over messages_per_minute
        self.assertEqual(self.accepted, [(start, 1), (start + 5, 1)])
