"""Port 465 sessions: sender authorization, header completion, storage outcomes."""

from __future__ import annotations

from typing import Any

from OpenSSL import crypto
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rail.mail.headers import parse_header_section
from rail.smtp.server import RailESMTP
from rail.smtp.submission import SubmissionSession
from rail.store.model import QueueFullError, StoreUnavailableError
from rail.testing import MemoryStore
from tests.pki.helpers import issue_client, make_ca
from tests.smtp.helpers import LIMITS

SENDERS = ("noreply@ataca.io", "alerts@smtp.ataca.io")


class _TLSTransport(StringTransport):
    """A StringTransport that presents a client certificate, as Twisted's TLS does."""

    def __init__(self, certificate: Any) -> None:
        super().__init__()
        self._certificate = certificate

    def getPeerCertificate(self) -> Any:
        return self._certificate


class SubmissionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_790_000_000)
        self.store = MemoryStore(self.clock)
        certificate, _ = issue_client(make_ca(), name="myapp", emails=SENDERS)
        self.transport = _TLSTransport(crypto.X509.from_cryptography(certificate))
        self.session = SubmissionSession(self.store, self.clock, "mx.rail.test")
        self.protocol = RailESMTP(
            self.session, hostname="mx.rail.test", limits=LIMITS, clock=self.clock
        )
        self.protocol.makeConnection(self.transport)
        self.protocol.handshakeCompleted()
        self.send(b"EHLO app.example\r\n")

    def send(self, data: bytes) -> list[bytes]:
        self.transport.clear()
        self.protocol.dataReceived(data)
        return [line for line in self.transport.value().split(b"\r\n") if line]

    def submit(self, sender: bytes, body: bytes, rcpt: bytes = b"to@dest.example") -> list[bytes]:
        return self.send(
            b"MAIL FROM:<" + sender + b">\r\nRCPT TO:<" + rcpt + b">\r\nDATA\r\n" + body + b".\r\n"
        )

    def only_message(self) -> Any:
        [message] = self.store.messages.values()
        return message

    def test_identity_from_handshake(self) -> None:
        """The session's identity is the certificate's CN and email SANs."""
        assert self.session.identity is not None
        self.assertEqual(self.session.identity.name, "myapp")
        self.assertEqual(self.session.identity.senders, SENDERS)

    def test_authorized_sender(self) -> None:
        """MAIL FROM matching a SAN (domain in any case) is accepted and queued; the reply
        names the message id."""
        replies = self.submit(b"noreply@ATACA.io", b"From: noreply@ataca.io\r\n\r\nhi\r\n")
        message = self.only_message()
        self.assertEqual(replies[-1], b"250 2.0.0 Ok: queued as " + message.id.encode())
        self.assertEqual(message.client, "myapp")
        self.assertEqual(message.sender, "noreply@ATACA.io")
        self.assertEqual(message.recipients, ("to@dest.example",))
        self.assertEqual(message.channel, "smtp")

    def test_unauthorized_envelope_sender(self) -> None:
        """Another local part, or the same in other case, is 550 5.7.1 at MAIL."""
        for sender in (b"other@ataca.io", b"NoReply@ataca.io", b"noreply@evil.example"):
            self.assertEqual(
                self.send(b"RSET\r\nMAIL FROM:<" + sender + b">\r\n")[-1],
                b"550 5.7.1 Sender not authorized",
            )

    def test_null_sender_refused(self) -> None:
        """The null reverse-path is refused on port 465."""
        self.assertEqual(self.send(b"MAIL FROM:<>\r\n"), [b"550 5.7.1 Sender not authorized"])

    def test_from_header_must_be_authorized(self) -> None:
        """Every address in From must be a SAN: one stranger refuses the message."""
        for header in (
            b"From: Someone <ceo@bank.example>",
            b"From: noreply@ataca.io, ceo@bank.example",
            b"From: undisclosed",
        ):
            replies = self.submit(b"noreply@ataca.io", header + b"\r\n\r\nhi\r\n")
            self.assertEqual(replies[-1], b"550 5.7.1 From header address not authorized")
        self.assertEqual(self.store.messages, {})

    def test_sender_and_resent_fields_authorized(self) -> None:
        """Sender, Resent-From and Resent-Sender name the sender too: a stranger there is
        refused like one in From."""
        for header in (b"Sender: ceo@bank.example", b"Resent-From: ceo@bank.example"):
            replies = self.submit(
                b"noreply@ataca.io", b"From: noreply@ataca.io\r\n" + header + b"\r\n\r\nx\r\n"
            )
            self.assertEqual(replies[-1][:9], b"550 5.7.1", header)
        replies = self.submit(
            b"noreply@ataca.io",
            b"From: noreply@ataca.io\r\nSender: alerts@smtp.ataca.io\r\n\r\nx\r\n",
        )
        self.assertEqual(replies[-1][:9], b"250 2.0.0")

    def test_two_from_headers_refused(self) -> None:
        """A message with two From fields is refused (RFC 5322 allows one)."""
        replies = self.submit(
            b"noreply@ataca.io", b"From: noreply@ataca.io\r\nFrom: noreply@ataca.io\r\n\r\nx\r\n"
        )
        self.assertEqual(replies[-1][:9], b"550 5.6.0")

    def test_headers_completed(self) -> None:
        """A bare message gets Received (naming the client), From, Date and Message-ID;
        the app's own bytes follow unchanged."""
        body = b"Subject: Hello\r\n\r\nHi!\r\n"
        self.submit(b"noreply@ataca.io", body)
        message = self.only_message()
        section = parse_header_section(message.data)
        self.assertTrue(message.data.startswith(b"Received: from app.example ([192.168.1.1])"))
        self.assertIn(b"(authenticated client myapp)", message.data)
        self.assertEqual(section.values("from"), ["<noreply@ataca.io>"])
        self.assertEqual(section.values("message-id"), [f"<{message.id}@mx.rail.test>"])
        self.assertEqual(len(section.values("date")), 1)
        self.assertTrue(message.data.endswith(b"\r\n\r\nHi!\r\n"))
        self.assertNotIn(b"\n", message.data.replace(b"\r\n", b""))

    def test_existing_headers_kept(self) -> None:
        """Date and Message-ID written by the app are kept as they are; the stored bytes
        are the Received header followed by exactly what the app sent."""
        body = (
            b"From: noreply@ataca.io\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
            b"Message-ID: <x@app.example>\r\n\r\nbody\r\n"
        )
        self.submit(b"noreply@ataca.io", body)
        data = self.only_message().data
        self.assertTrue(data.endswith(b"\r\n" + body))
        self.assertEqual(parse_header_section(data).fields[0][0], "received")
        self.assertEqual(data.count(b"Message-ID"), 1)

    def test_queue_full(self) -> None:
        """A full queue answers 452 4.3.1 (retry later), nothing stored."""
        self.store.full = True
        replies = self.submit(b"noreply@ataca.io", b"x\r\n")
        self.assertEqual(replies[-1][:9], b"452 4.3.1")

    def test_store_unavailable(self) -> None:
        """A store failure answers 451 4.3.0."""
        self.store.fail_next = StoreUnavailableError("disk I/O error")
        replies = self.submit(b"noreply@ataca.io", b"x\r\n")
        self.assertEqual(replies[-1][:9], b"451 4.3.0")

    def test_unexpected_store_error(self) -> None:
        """An unexpected exception from the store is logged and answered 451 4.3.0."""
        self.store.fail_next = ZeroDivisionError()
        replies = self.submit(b"noreply@ataca.io", b"x\r\n")
        self.assertEqual(replies[-1][:9], b"451 4.3.0")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_audit_line(self) -> None:
        """Each accepted message logs one rail.audit line with client, id, sender,
        recipient count, size and channel."""
        with capturedLogs() as events:
            self.submit(b"noreply@ataca.io", b"x\r\n")
        [event] = [e for e in events if e.get("log_namespace") == "rail.audit"]
        message = self.only_message()
        self.assertEqual(event["log_level"], LogLevel.info)
        self.assertEqual(
            {k: event[k] for k in ("msg_id", "client", "sender", "recipients", "size", "channel")},
            {
                "msg_id": message.id,
                "client": "myapp",
                "sender": "noreply@ataca.io",
                "recipients": 1,
                "size": len(message.data),
                "channel": "smtp",
            },
        )

    def test_queue_full_is_not_a_session_error(self) -> None:
        """QueueFullError and the refusal vocabulary stay distinct from bugs."""
        self.assertFalse(issubclass(QueueFullError, StoreUnavailableError))


class NoIdentityTests(SynchronousTestCase):
    def test_no_certificate_no_mail(self) -> None:
        """Without a handshake identity MAIL is 530 5.7.0 (defence in depth: the TLS
        layer already requires a certificate on 465)."""
        clock = Clock()
        session = SubmissionSession(MemoryStore(clock), clock, "mx.rail.test")
        protocol = RailESMTP(session, hostname="mx.rail.test", limits=LIMITS, clock=clock)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"EHLO a.example\r\nMAIL FROM:<noreply@ataca.io>\r\n")
        self.assertTrue(transport.value().endswith(b"530 5.7.0 Client certificate required\r\n"))


class RevokedDuringSessionTests(SynchronousTestCase):
    """The certificate is revoked while the session is open."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore(self.clock)
        certificate, _ = issue_client(make_ca(), name="myapp", emails=SENDERS)
        self.serial = certificate.serial_number
        self.revoked: frozenset[int] = frozenset()
        self.transport = _TLSTransport(crypto.X509.from_cryptography(certificate))
        session = SubmissionSession(
            self.store, self.clock, "mx.rail.test", revoked=lambda: self.revoked
        )
        self.protocol = RailESMTP(session, hostname="mx.rail.test", limits=LIMITS, clock=self.clock)
        self.protocol.makeConnection(self.transport)
        self.protocol.handshakeCompleted()
        self.send(b"EHLO app.example\r\n")

    def send(self, data: bytes) -> list[bytes]:
        self.transport.clear()
        self.protocol.dataReceived(data)
        return [line for line in self.transport.value().split(b"\r\n") if line]

    def test_next_mail_from_refused(self) -> None:
        """MAIL FROM after the serial enters the loaded revocations is 530 5.7.0, every
        time, logged once per session; nothing is queued."""
        self.assertEqual(self.send(b"MAIL FROM:<noreply@ataca.io>\r\nRSET\r\n")[0][:3], b"250")
        self.revoked = frozenset({self.serial})
        with capturedLogs() as events:
            for _ in range(2):
                self.assertEqual(
                    self.send(b"MAIL FROM:<noreply@ataca.io>\r\n"),
                    [b"530 5.7.0 Client certificate revoked"],
                )
        [event] = [e for e in events if "revoked during the session" in e["log_format"]]
        self.assertEqual((event["client"], event["serial"]), ("myapp", format(self.serial, "x")))
        self.assertEqual(self.store.messages, {})

    def test_other_serials_do_not_matter(self) -> None:
        """Revoking another certificate changes nothing for this session."""
        self.revoked = frozenset({self.serial + 1})
        self.assertEqual(self.send(b"MAIL FROM:<noreply@ataca.io>\r\n")[0][:3], b"250")
