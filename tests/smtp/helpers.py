"""A scriptable session and a byte-level harness for RailESMTP tests."""

from __future__ import annotations

import re
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from rail.policy.verdict import Reject
from rail.smtp.server import RailESMTP, SMTPLimits
from rail.smtp.session import Envelope, Reply

LIMITS = SMTPLimits(
    message_size=10_000,
    max_recipients=3,
    idle_timeout=300.0,
    transaction_timeout=600.0,
    bad_commands=5,
)

REPLY = re.compile(rb"^(\d{3})([ -])(.*)$")
ENHANCED = re.compile(rb"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3} ")


class ScriptedSession:
    """Records what the protocol asks; answers synchronously, or with Deferreds the test
    fires when ``asynchronous`` is set."""

    def __init__(self, asynchronous: bool = False) -> None:
        self.asynchronous = asynchronous
        self.pending: list[tuple[defer.Deferred[Any], Any]] = []
        self.delivered: list[tuple[Envelope, bytes]] = []
        self.mail_verdict: Reject | None = None
        self.rcpt_verdicts: dict[str, Reject] = {}
        self.deliver_failure: Exception | None = None
        self.handshakes = 0

    def _answer(self, value: Any) -> Any:
        if not self.asynchronous:
            return value
        d: defer.Deferred[Any] = defer.Deferred()
        self.pending.append((d, value))
        return d

    def fire_all(self) -> None:
        while self.pending:
            d, value = self.pending.pop(0)
            if isinstance(value, Exception):
                d.errback(value)
            else:
                d.callback(value)

    def handshake_completed(self, transport: Any) -> None:
        self.handshakes += 1

    def check_mail(self, envelope: Envelope) -> Any:
        return self._answer(self.mail_verdict)

    def check_rcpt(self, envelope: Envelope, recipient: str) -> Any:
        return self._answer(self.rcpt_verdicts.get(recipient))

    def deliver(self, envelope: Envelope, data: bytes) -> Any:
        if self.deliver_failure is not None:
            if self.asynchronous:
                return self._answer(self.deliver_failure)
            return defer.fail(self.deliver_failure)
        self.delivered.append((envelope, data))
        return self._answer(Reply(250, "2.0.0", "Ok: queued as X"))


class Harness:
    """A RailESMTP on a StringTransport with a Clock."""

    def __init__(self, session: ScriptedSession | None = None, limits: SMTPLimits = LIMITS):
        self.session = session or ScriptedSession()
        self.clock = Clock()
        self.transport = StringTransport(peerAddress=None)
        self.protocol = RailESMTP(
            self.session, hostname="mx.rail.test", limits=limits, clock=self.clock
        )
        self.protocol.makeConnection(self.transport)
        self.greeting = self.take()

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def take(self) -> list[bytes]:
        """The reply lines written since the last call."""
        value = self.transport.value()
        self.transport.clear()
        return [line for line in value.split(b"\r\n") if line]

    def codes(self) -> list[int]:
        return [int(line[:3]) for line in self.take() if line[3:4] == b" "]

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)

    def ehlo(self) -> None:
        self.send(b"EHLO client.example\r\n")
        self.take()

    def transaction(self, body: bytes = b"Subject: hi\r\n\r\nhello\r\n") -> bytes:
        return (
            b"MAIL FROM:<app@rail.test>\r\nRCPT TO:<to@dest.example>\r\nDATA\r\n" + body + b".\r\n"
        )
