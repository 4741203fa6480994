"""Port 465: X-Rail-Tag and X-Rail-Metadata-* fields, and suppressed recipients."""

from __future__ import annotations

from typing import Any

from OpenSSL import crypto
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rail.mail.meta import MAX_KEYS, MAX_VALUE
from rail.refusals import Refusals
from rail.smtp.server import RailESMTP
from rail.smtp.submission import SubmissionSession
from rail.store.model import MessageMeta
from rail.store.suppressions import Suppression
from rail.testing import MemoryStore
from tests.pki.helpers import issue_client, make_ca
from tests.smtp.helpers import LIMITS
from tests.smtp.test_submission import SENDERS, _TLSTransport

_HEAD = b"From: noreply@ataca.io\r\nSubject: hi\r\n"


class SubmissionMetaTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_790_000_000)
        self.store = MemoryStore(self.clock)
        self.refusals = Refusals(self.clock)
        certificate, _ = issue_client(make_ca(), name="myapp", emails=SENDERS)
        self.certificate = crypto.X509.from_cryptography(certificate)
        self.connect()

    def connect(self) -> None:
        """A new session (refusals count towards closing one)."""
        self.transport = _TLSTransport(self.certificate)
        session = SubmissionSession(self.store, self.clock, "mx.rail.test", refusals=self.refusals)
        self.protocol = RailESMTP(session, hostname="mx.rail.test", limits=LIMITS, clock=self.clock)
        self.protocol.makeConnection(self.transport)
        self.protocol.handshakeCompleted()
        self.send(b"EHLO app.example\r\n")

    def send(self, data: bytes) -> list[bytes]:
        self.transport.clear()
        self.protocol.dataReceived(data)
        return [line for line in self.transport.value().split(b"\r\n") if line]

    def submit(self, head: bytes, rcpts: tuple[bytes, ...] = (b"to@dest.example",)) -> list[bytes]:
        command = b"MAIL FROM:<noreply@ataca.io>\r\n"
        command += b"".join(b"RCPT TO:<" + r + b">\r\n" for r in rcpts)
        return self.send(command + b"DATA\r\n" + head + b"\r\nbody line\r\n.\r\n")

    def only_message(self) -> Any:
        [message] = self.store.messages.values()
        return message

    def test_fields_become_meta_and_are_removed(self) -> None:
        """X-Rail-Tag and X-Rail-Metadata-<key> (folded, any case of the prefix) become the
        message's tag and metadata, keys as written, and are not in the stored message;
        the other fields and the body are untouched."""
        head = (
            b"From: noreply@ataca.io\r\n"
            b"X-Rail-Tag: welcome\r\n"
            b"Subject: hi\r\n"
            b"x-rail-metadata-Order.Id: 12\r\n 34\r\n"
            b"X-Rail-Metadata-user: u-9\r\n"
            b"X-Rail-Other: kept\r\n"
        )
        replies = self.submit(head)
        self.assertTrue(replies[-1].startswith(b"250 2.0.0"), replies)
        message = self.only_message()
        self.assertEqual(
            message.meta, MessageMeta(tag="welcome", metadata={"Order.Id": "12 34", "user": "u-9"})
        )
        self.assertNotIn(b"x-rail-tag", message.data.lower())
        self.assertNotIn(b"x-rail-metadata", message.data.lower())
        self.assertIn(b"\r\nSubject: hi\r\nX-Rail-Other: kept\r\n", message.data)
        self.assertTrue(message.data.endswith(b"\r\n\r\nbody line\r\n"))

    def test_no_fields_no_meta(self) -> None:
        """A message without such fields is stored with empty meta."""
        self.submit(_HEAD)
        self.assertFalse(self.only_message().meta)

    def test_bounds_refused(self) -> None:
        """A value over the bound, a bad key, a repeated tag or key and too many keys are
        each refused with 550 5.6.0 naming the problem and counted as a refusal, and
        nothing is stored."""
        cases = [
            (b"X-Rail-Metadata-k: " + b"v" * (MAX_VALUE + 1) + b"\r\n", b"X-Rail-Metadata-k"),
            (b"X-Rail-Metadata-a+b: 1\r\n", b"X-Rail-Metadata-a+b"),
            (b"X-Rail-Tag: a\r\nX-Rail-Tag: b\r\n", b"more than once"),
            (b"X-Rail-Metadata-k: 1\r\nX-Rail-Metadata-K: 2\r\n", b"more than once"),
            (b"X-Rail-Tag: \r\n", b"X-Rail-Tag"),
            (
                b"".join(b"X-Rail-Metadata-k%d: v\r\n" % i for i in range(MAX_KEYS + 1)),
                b"more than 20",
            ),
        ]
        for extra, text in cases:
            self.connect()
            replies = self.submit(_HEAD + extra)
            self.assertTrue(replies[-1].startswith(b"550 5.6.0 "), replies)
            self.assertIn(text, replies[-1])
        self.assertEqual(self.store.messages, {})
        self.assertEqual(self.refusals.counts, {("submission", "metadata"): len(cases)})

    def test_suppressed_recipient_is_accepted_silently(self) -> None:
        """A suppressed recipient's RCPT is accepted and the message too; only the other
        recipient is queued, and the event tells the app."""
        self.store.suppressions[("myapp", "gone@dest.example")] = Suppression(
            "myapp", "gone@dest.example", "hard_bounce", "dsn", 1.0
        )
        replies = self.submit(_HEAD, (b"to@dest.example", b"Gone@dest.example"))
        self.assertEqual(replies[1:3], [b"250 2.1.5 Recipient ok"] * 2)
        self.assertTrue(replies[-1].startswith(b"250 2.0.0"), replies)
        message = self.only_message()
        status = self.successResultOf(self.store.status("myapp", message.id))
        self.assertEqual(
            [(r.address, r.status) for r in status.recipients],
            [("to@dest.example", "queued"), ("Gone@dest.example", "suppressed")],
        )
        self.assertEqual([e.type for e in self.store.events], ["message.suppressed"])
