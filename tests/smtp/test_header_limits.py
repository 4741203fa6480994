"""The header section cap at the byte level on both SMTP ports: a message whose header
section is over ``limits.header_size`` or ``limits.header_fields`` gets ``552 5.3.4``
after DATA, nothing is stored or verified, and the session goes on."""

from __future__ import annotations

from typing import Any

from OpenSSL import crypto
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from rail.config.schema import Inbound
from rail.mail.headers import HeaderLimits
from rail.refusals import Refusals
from rail.smtp.inbound import InboundSession
from rail.smtp.server import RailESMTP, SMTPLimits
from rail.smtp.submission import SubmissionSession
from rail.testing import MemoryStore
from tests.pki.helpers import issue_client, make_ca
from tests.smtp.test_inbound import TABLE, FakeVerifier
from tests.smtp.test_submission import _TLSTransport

HEADER_LIMITS = HeaderLimits(size=1024, fields=10)
LIMITS = SMTPLimits(
    message_size=100_000,
    max_recipients=3,
    idle_timeout=300.0,
    transaction_timeout=600.0,
    bad_commands=5,
)
FROM = b"From: <noreply@ataca.io>\r\n"
TOO_LARGE = b"552 5.3.4 Message header section too large"
TOO_MANY = b"552 5.3.4 Message header has too many fields"


def sized_header(size: int) -> bytes:
    """A From field and one X-Pad field folded over many short continuation lines, the
    two exactly ``size`` octets with their CRLFs."""
    pad = size - len(FROM) - len(b"X-Pad: x\r\n")
    assert pad >= 0 and pad % 4 == 0, pad
    return FROM + b"X-Pad: x" + b"\r\n y" * (pad // 4) + b"\r\n"


def fielded_header(fields: int) -> bytes:
    return FROM + b"".join(b"X-N: %d\r\n" % n for n in range(fields - 1))


class _Cases:
    """Shared by both ports: ``start`` opens a transaction up to DATA's 354 and
    ``stored`` is what the store holds."""

    listener = ""
    protocol: RailESMTP
    refusals: Refusals

    def send(self, data: bytes) -> list[bytes]:
        transport: Any = self.protocol.transport
        transport.clear()
        self.protocol.dataReceived(data)
        return [line for line in transport.value().split(b"\r\n") if line]

    def start(self) -> None:
        raise NotImplementedError

    def stored(self) -> int:
        raise NotImplementedError

    def deliver(self, header: bytes) -> list[bytes]:
        self.start()
        return self.send(header + b"\r\nbody\r\n.\r\n")

    def test_size_limit_exact(self) -> None:
        """A header section of exactly ``header_size`` octets (many continuation lines
        in one field) is accepted; one of four octets more is refused with 552 5.3.4
        after DATA and nothing is stored."""
        self.assertEqual(self.deliver(sized_header(1024))[-1][:3], b"250")
        self.assertEqual(self.deliver(sized_header(1028)), [TOO_LARGE])
        self.assertEqual(self.stored(), 1)

    def test_field_limit_exact(self) -> None:
        """``header_fields`` fields are accepted; one more is refused with 552 5.3.4."""
        self.assertEqual(self.deliver(fielded_header(10))[-1][:3], b"250")
        self.assertEqual(self.deliver(fielded_header(11)), [TOO_MANY])
        self.assertEqual(self.stored(), 1)

    def test_continuation_lines_are_not_fields(self) -> None:
        """Continuation lines count towards the size only: 200 of them in one field of a
        two-field header are within both limits."""
        header = FROM + b"Subject: s" + b"\r\n s" * 200 + b"\r\n"
        self.assertEqual(self.deliver(header)[-1][:3], b"250")

    def test_session_continues_and_refusal_counted(self) -> None:
        """After the refusal the session takes the next message, and the refusal is
        counted for the listener under its reason."""
        self.assertEqual(self.deliver(sized_header(1028 + 4000)), [TOO_LARGE])
        self.assertEqual(self.deliver(FROM)[-1][:3], b"250")
        self.assertEqual(self.refusals.counts, {(self.listener, "header_size"): 1})

    def test_header_without_body(self) -> None:
        """A message that is all header (no empty line) is measured to its end."""
        self.start()
        replies = self.send(sized_header(1028) + b".\r\n")
        self.assertEqual(replies, [TOO_LARGE])


class SubmissionHeaderLimitTests(_Cases, SynchronousTestCase):
    listener = "submission"

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_790_000_000)
        self.store = MemoryStore(self.clock)
        self.refusals = Refusals(self.clock)
        certificate, _ = issue_client(make_ca(), name="myapp", emails=("noreply@ataca.io",))
        session = SubmissionSession(
            self.store,
            self.clock,
            "mx.rail.test",
            header_limits=HEADER_LIMITS,
            refusals=self.refusals,
        )
        self.protocol = RailESMTP(session, hostname="mx.rail.test", limits=LIMITS, clock=self.clock)
        self.protocol.makeConnection(_TLSTransport(crypto.X509.from_cryptography(certificate)))
        self.protocol.handshakeCompleted()
        self.send(b"EHLO app.example\r\n")

    def start(self) -> None:
        replies = self.send(
            b"MAIL FROM:<noreply@ataca.io>\r\nRCPT TO:<to@dest.example>\r\nDATA\r\n"
        )
        self.assertEqual(replies[-1][:3], b"354")

    def stored(self) -> int:
        return len(self.store.messages)


class InboundHeaderLimitTests(_Cases, SynchronousTestCase):
    listener = "inbound"

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_790_000_000)
        self.store = MemoryStore(self.clock)
        self.refusals = Refusals(self.clock)
        self.verifier = FakeVerifier()
        session = InboundSession(
            store=self.store,
            verifier=self.verifier,
            recipients=lambda: TABLE,
            settings=Inbound(),
            clock=self.clock,
            hostname="mx.rail.test",
            header_limits=HEADER_LIMITS,
            refusals=self.refusals,
        )
        self.protocol = RailESMTP(session, hostname="mx.rail.test", limits=LIMITS, clock=self.clock)
        self.protocol.makeConnection(
            StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
        )
        self.send(b"EHLO mail.sender.example\r\n")

    def start(self) -> None:
        replies = self.send(
            b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<hello@rail.test>\r\nDATA\r\n"
        )
        self.assertEqual(replies[-1][:3], b"354")

    def stored(self) -> int:
        return len(self.store.inbound)

    def test_not_verified(self) -> None:
        """A refused message is not handed to SPF/DKIM/DMARC verification."""
        self.deliver(fielded_header(11))
        self.assertEqual(self.verifier.calls, [])


class UnreadableFromTests(SynchronousTestCase):
    def test_deeply_nested_from_refused(self) -> None:
        """A From whose comments nest past the stdlib's recursion limit is an unreadable
        sender (550 5.7.1), not a crash answered 451 for the client to retry forever."""
        clock = Clock()
        store = MemoryStore(clock)
        certificate, _ = issue_client(make_ca(), name="myapp", emails=("noreply@ataca.io",))
        session = SubmissionSession(store, clock, "mx.rail.test")
        protocol = RailESMTP(session, hostname="mx.rail.test", limits=LIMITS, clock=clock)
        transport = _TLSTransport(crypto.X509.from_cryptography(certificate))
        protocol.makeConnection(transport)
        protocol.handshakeCompleted()
        # 3,000 levels of comments, folded into lines SMTP accepts.
        header = b"From: " + b"\r\n ".join([b"(" * 500] * 6 + [b")" * 500] * 6)
        header += b" noreply@ataca.io\r\n"
        transport.clear()
        protocol.dataReceived(
            b"EHLO app.example\r\nMAIL FROM:<noreply@ataca.io>\r\nRCPT TO:<to@dest.example>\r\n"
            b"DATA\r\n" + header + b"\r\nbody\r\n.\r\n"
        )
        last = transport.value().rstrip(b"\r\n").split(b"\r\n")[-1]
        self.assertEqual(last, b"550 5.7.1 From header address not authorized")
        self.assertEqual(store.messages, {})
