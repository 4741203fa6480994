"""Byte-level tests of the outbound SMTP client and of reading the server's replies."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.client import CHUNK, ClientTimeouts, SMTPClientProtocol
from rail.delivery.dotstuff import dot_stuff
from rail.delivery.outcome import MessageResult, OutboundMessage, Reply, SessionError
from rail.delivery.replies import (
    MAX_REPLY_LINE,
    MAX_REPLY_LINES,
    Capabilities,
    ReplyError,
    ReplyReader,
    Response,
    local_refusal,
    mail_command,
    parse_capabilities,
)

# Distinct values, so each test proves which timeout applies.
TIMEOUTS = ClientTimeouts(
    greeting=11, mail=12, rcpt=13, data_init=14, data_block=15, data_end=16, other=17
)
EXTENSIONS = (b"PIPELINING", b"SIZE 1000000", b"8BITMIME", b"ENHANCEDSTATUSCODES", b"SMTPUTF8")
MESSAGE = OutboundMessage(
    sender="app@rail.test",
    recipients=("a@dest.example", "b@dest.example"),
    data=b"Subject: hi\r\n\r\n.hello\r\n",
)
TLS = object()  # stands for a TLS connection creator; the fake transport only records it


class FakeTransport(StringTransport):
    """A StringTransport that records STARTTLS and each write, and can push back: with a
    ``window``, it pauses the registered producer once that many bytes are unread."""

    def __init__(self) -> None:
        super().__init__()
        self.tls: Any = None
        self.writes = 0
        self.window: int | None = None

    def startTLS(self, context: Any) -> None:
        self.tls = context

    def write(self, data: bytes) -> None:
        super().write(data)
        self.writes += 1
        if self.window is not None and self.producer and len(self.value()) >= self.window:
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        """The peer reads everything written so far; the producer may go on."""
        data = self.value()
        self.clear()
        if self.producer is not None:
            self.producer.resumeProducing()
        return data


class Harness:
    """An SMTPClientProtocol on a FakeTransport with a Clock; the test plays the server."""

    def __init__(self, *, tls: Any = None, require_tls: bool = False) -> None:
        self.clock = Clock()
        self.transport = FakeTransport()
        self.protocol = SMTPClientProtocol(
            "out.rail.test", self.clock, tls, TIMEOUTS, require_tls=require_tls
        )
        self.protocol.makeConnection(self.transport)
        self.ready: list[Any] = []
        self.protocol.ready.addBoth(self.ready.append)

    def receive(self, *lines: bytes) -> None:
        self.protocol.dataReceived(b"".join(line + b"\r\n" for line in lines))

    def sent(self) -> list[bytes]:
        """The lines the client wrote since the last call."""
        value = self.transport.value()
        self.transport.clear()
        return value.split(b"\r\n")[:-1]

    def lose(self, reason: Exception | None = None) -> None:
        self.protocol.connectionLost(Failure(reason or ConnectionLost()))

    def greet(self, *extensions: bytes) -> None:
        """Greeting and EHLO, the server offering ``extensions``; the session is ready."""
        self.receive(b"220 mx.dest.example ESMTP")
        assert self.sent() == [b"EHLO out.rail.test"]
        names = (b"mx.dest.example", *extensions)
        self.receive(*[b"250-" + n for n in names[:-1]], b"250 " + names[-1])
        assert self.ready == [self.protocol], self.ready

    @property
    def aborted(self) -> bool:
        return bool(self.transport.disconnected)


def replies(reader: ReplyReader, data: bytes) -> list[Response]:
    responses, error = reader.feed(data)
    assert error is None, error
    return responses


def results(d: Deferred[MessageResult]) -> list[tuple[str, int, str | None]]:
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    [result] = outcome
    assert isinstance(result, MessageResult), result
    return [(r.address, r.reply.code, r.reply.enhanced) for r in result.recipients]


class SetUpTests(SynchronousTestCase):
    def test_ehlo_with_configured_name(self) -> None:
        """After the 220 greeting the client says EHLO with the configured name, reads
        the multi-line reply into capabilities and is ready."""
        h = Harness()
        h.greet(b"PIPELINING", b"size 2000", b"8BITMIME", b"AUTH PLAIN LOGIN")
        self.assertEqual(
            h.protocol.capabilities,
            Capabilities(
                esmtp=True,
                extensions={
                    "PIPELINING": "",
                    "SIZE": "2000",
                    "8BITMIME": "",
                    "AUTH": "PLAIN LOGIN",
                },
            ),
        )
        self.assertEqual(h.protocol.capabilities.size_limit, 2000)
        self.assertFalse(h.protocol.tls_active)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_helo_fallback(self) -> None:
        """A 5xx to EHLO falls back to HELO; then nothing is assumed: no pipelining and
        no MAIL parameters."""
        h = Harness()
        h.receive(b"220 old.example")
        h.sent()
        h.receive(b"502 5.5.1 command not recognized")
        self.assertEqual(h.sent(), [b"HELO out.rail.test"])
        h.receive(b"250 old.example")
        self.assertEqual(h.ready, [h.protocol])
        self.assertEqual(h.protocol.capabilities, Capabilities(esmtp=False))
        h.protocol.send(attrs.evolve(MESSAGE, eight_bit=True))
        self.assertEqual(h.sent(), [b"MAIL FROM:<app@rail.test>"])

    def test_greeting_refusals_are_remote_replies(self) -> None:
        """A 4xx or 5xx greeting fails the session with the server's own reply (a 554
        greeting is a real answer, not a local guess) and drops the connection."""
        for line, code, enhanced in (
            (b"421 4.7.0 too busy", 421, "4.7.0"),
            (b"554 no SMTP service here", 554, None),
        ):
            h = Harness()
            h.receive(line)
            error = h.ready[0].value
            self.assertIsInstance(error, SessionError)
            self.assertEqual((error.reply.code, error.reply.enhanced), (code, enhanced))
            self.assertTrue(error.reply.remote)
            self.assertTrue(h.aborted)
            self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_ehlo_and_helo_refusals(self) -> None:
        """A 4xx to EHLO, or any refusal of HELO, fails the session with that reply."""
        h = Harness()
        h.receive(b"220 x")
        h.receive(b"451 4.3.2 try later")
        self.assertEqual(h.ready[0].value.reply, Reply(451, "4.3.2", "try later"))
        h = Harness()
        h.receive(b"220 x", b"500 what", b"550 5.7.1 go away")
        self.assertEqual(h.ready[0].value.reply, Reply(550, "5.7.1", "go away"))

    def test_cancel_ready(self) -> None:
        """Cancelling ``ready`` drops the connection and fails it with CancelledError."""
        h = Harness()
        h.protocol.ready.cancel()
        self.assertIsInstance(h.ready[0].value, CancelledError)
        self.assertTrue(h.aborted)
        self.assertEqual(h.clock.getDelayedCalls(), [])


class StartTLSTests(SynchronousTestCase):
    def test_starttls_when_offered(self) -> None:
        """With a TLS creator and STARTTLS offered: STARTTLS, the handshake on the same
        connection, EHLO again, and the capabilities from the second EHLO only."""
        h = Harness(tls=TLS)
        h.receive(b"220 x")
        h.sent()
        h.receive(b"250-x", b"250-SIZE 10", b"250 STARTTLS")
        self.assertEqual(h.sent(), [b"STARTTLS"])
        self.assertEqual(h.ready, [])
        h.receive(b"220 2.0.0 go ahead")
        self.assertIs(h.transport.tls, TLS)
        self.assertEqual(h.sent(), [b"EHLO out.rail.test"])
        h.protocol.handshakeCompleted()
        h.receive(b"250-x", b"250-PIPELINING", b"250 STARTTLS")
        self.assertEqual(h.ready, [h.protocol])
        self.assertTrue(h.protocol.tls_active)
        self.assertEqual(
            dict(h.protocol.capabilities.extensions), {"PIPELINING": "", "STARTTLS": ""}
        )
        self.assertEqual(h.sent(), [])

    def test_no_starttls_without_creator(self) -> None:
        """Without a TLS creator the client never starts TLS, even when offered."""
        h = Harness()
        h.greet(b"STARTTLS")
        self.assertEqual(h.sent(), [])
        self.assertFalse(h.protocol.tls_active)

    def test_plaintext_after_starttls_reply_is_dropped(self) -> None:
        """Bytes the server sent in plaintext after its 220 to STARTTLS are discarded,
        not taken as the reply to the EHLO sent inside TLS (response injection)."""
        h = Harness(tls=TLS)
        h.receive(b"220 x")
        h.receive(b"250-x", b"250 STARTTLS")
        h.sent()
        h.receive(b"220 go ahead", b"250-injected", b"250 AUTH PLAIN")
        self.assertEqual(h.ready, [])
        h.protocol.handshakeCompleted()
        h.receive(b"250 x")
        self.assertEqual(h.ready, [h.protocol])
        self.assertNotIn("AUTH", h.protocol.capabilities)

    def test_starttls_refused_goes_on_in_plaintext(self) -> None:
        """Opportunistic: a refused STARTTLS leaves the session in plaintext, ready."""
        h = Harness(tls=TLS)
        h.receive(b"220 x", b"250-x", b"250 STARTTLS", b"454 4.7.0 TLS not available")
        self.assertEqual(h.ready, [h.protocol])
        self.assertFalse(h.protocol.tls_active)
        self.assertIsNone(h.transport.tls)

    def test_handshake_failure(self) -> None:
        """A connection lost during the TLS negotiation is a SessionError marked
        ``tls_failed`` (so the host is retried in plaintext), local 451 4.7.5."""
        h = Harness(tls=TLS)
        h.receive(b"220 x", b"250-x", b"250 STARTTLS", b"220 go")
        h.lose(ConnectionLost("SSL routines: wrong version number"))
        error = h.ready[0].value
        self.assertTrue(error.tls_failed)
        self.assertEqual((error.reply.code, error.reply.enhanced), (451, "4.7.5"))
        self.assertFalse(error.reply.remote)
        self.assertIn("wrong version number", error.reply.text)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_handshake_timeout(self) -> None:
        """A handshake that never completes times out as a TLS failure too."""
        h = Harness(tls=TLS)
        h.receive(b"220 x", b"250-x", b"250 STARTTLS", b"220 go")
        h.clock.advance(TIMEOUTS.other)
        self.assertTrue(h.ready[0].value.tls_failed)
        self.assertTrue(h.aborted)

    def test_require_tls_not_offered(self) -> None:
        """``require_tls`` and no STARTTLS: local 451 4.7.4, QUIT, connection closed;
        nothing is sent in plaintext."""
        h = Harness(tls=TLS, require_tls=True)
        h.receive(b"220 x")
        h.sent()
        h.receive(b"250-x", b"250 PIPELINING")
        error = h.ready[0].value
        self.assertEqual((error.reply.code, error.reply.enhanced), (451, "4.7.4"))
        self.assertFalse(error.tls_failed)
        self.assertEqual(h.sent(), [b"QUIT"])
        self.assertTrue(h.transport.disconnecting)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_require_tls_refused(self) -> None:
        """``require_tls`` and STARTTLS refused: local 451 4.7.4 naming the reply."""
        h = Harness(tls=TLS, require_tls=True)
        h.receive(b"220 x", b"250-x", b"250 STARTTLS", b"454 4.7.0 no")
        error = h.ready[0].value
        self.assertEqual(error.reply.enhanced, "4.7.4")
        self.assertIn("454 4.7.0 no", error.reply.text)

    def test_require_tls_needs_creator(self) -> None:
        """``require_tls`` without a TLS creator is a programming error."""
        self.assertRaises(ValueError, SMTPClientProtocol, "x", Clock(), None, TIMEOUTS, True)


class TransactionTests(SynchronousTestCase):
    def test_pipelined_transaction(self) -> None:
        """With PIPELINING, MAIL, every RCPT and DATA go in one write; after 354 the
        dot-stuffed body; each recipient gets the final reply."""
        h = Harness()
        h.greet(*EXTENSIONS)
        writes = h.transport.writes
        d = h.protocol.send(MESSAGE)
        self.assertEqual(h.transport.writes, writes + 1)
        self.assertEqual(
            h.sent(),
            [
                b"MAIL FROM:<app@rail.test> SIZE=23",
                b"RCPT TO:<a@dest.example>",
                b"RCPT TO:<b@dest.example>",
                b"DATA",
            ],
        )
        h.receive(b"250 2.1.0 Ok", b"250 2.1.5 Ok", b"250 2.1.5 Ok")
        self.assertEqual(h.transport.value(), b"")
        h.receive(b"354 go")
        self.assertEqual(h.transport.value(), dot_stuff(MESSAGE.data))
        self.assertEqual(h.transport.value(), b"Subject: hi\r\n\r\n..hello\r\n.\r\n")
        h.transport.clear()
        h.receive(b"250 2.0.0 Ok: queued as X")
        self.assertEqual(
            results(d),
            [("a@dest.example", 250, "2.0.0"), ("b@dest.example", 250, "2.0.0")],
        )
        self.assertEqual(h.protocol.messages_sent, 1)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_some_recipients_refused(self) -> None:
        """A refused recipient carries its RCPT reply; the others the final reply."""
        h = Harness()
        h.greet(*EXTENSIONS)
        message = attrs.evolve(MESSAGE, recipients=("a@x.example", "b@x.example", "c@x.example"))
        d = h.protocol.send(message)
        h.receive(b"250 ok", b"250 ok", b"550 5.1.1 no such user", b"250 ok", b"354 go")
        h.receive(b"451 4.3.0 try again")
        self.assertEqual(
            results(d),
            [
                ("a@x.example", 451, "4.3.0"),
                ("b@x.example", 550, "5.1.1"),
                ("c@x.example", 451, "4.3.0"),
            ],
        )

    def test_all_recipients_refused(self) -> None:
        """With every RCPT refused the server refuses DATA; no body is sent, each
        recipient keeps its own reply, and the next transaction starts with RSET."""
        h = Harness()
        h.greet(*EXTENSIONS)
        d = h.protocol.send(MESSAGE)
        h.sent()
        h.receive(
            b"250 ok", b"550 5.1.1 unknown", b"450 4.2.1 busy", b"554 5.5.1 no valid recipients"
        )
        self.assertEqual(
            results(d), [("a@dest.example", 550, "5.1.1"), ("b@dest.example", 450, "4.2.1")]
        )
        self.assertEqual(h.sent(), [])
        h.protocol.send(MESSAGE)
        self.assertEqual(h.sent()[:2], [b"RSET", b"MAIL FROM:<app@rail.test> SIZE=23"])

    def test_data_refused(self) -> None:
        """DATA refused (554) is the result of every accepted recipient."""
        h = Harness()
        h.greet(*EXTENSIONS)
        d = h.protocol.send(MESSAGE)
        h.receive(b"250 ok", b"250 ok", b"550 5.1.1 unknown", b"554 5.7.0 policy")
        self.assertEqual(
            results(d), [("a@dest.example", 554, "5.7.0"), ("b@dest.example", 550, "5.1.1")]
        )

    def test_sender_refused(self) -> None:
        """MAIL refused: every recipient gets that reply, whatever came after."""
        h = Harness()
        h.greet(*EXTENSIONS)
        d = h.protocol.send(MESSAGE)
        h.receive(b"553 5.7.1 sender rejected", b"503 5.5.1 need MAIL", b"503 5.5.1 need MAIL")
        self.assertFalse(d.called)
        h.receive(b"503 5.5.1 need MAIL")
        self.assertEqual(
            results(d), [("a@dest.example", 553, "5.7.1"), ("b@dest.example", 553, "5.7.1")]
        )

    def test_354_without_accepted_recipient(self) -> None:
        """A server that says 354 although no recipient was accepted gets an empty
        message (``.`` alone, RFC 2920); its reply changes nothing."""
        h = Harness()
        h.greet(*EXTENSIONS)
        d = h.protocol.send(MESSAGE)
        h.sent()
        h.receive(b"250 ok", b"550 no", b"550 no", b"354 go")
        self.assertEqual(h.sent(), [b"."])
        self.assertFalse(d.called)
        h.receive(b"250 ok")
        self.assertEqual(results(d), [("a@dest.example", 550, None), ("b@dest.example", 550, None)])

    def test_rset_only_after_a_failed_transaction(self) -> None:
        """A completed transaction (whatever its final reply) needs no RSET before the
        next; one that stopped before the end of data does."""
        h = Harness()
        h.greet(*EXTENSIONS)
        h.protocol.send(MESSAGE)
        h.receive(b"250 ok", b"250 ok", b"250 ok", b"354 go", b"550 5.7.1 spam")
        h.sent()
        h.protocol.send(MESSAGE)
        self.assertEqual(h.sent()[0], b"MAIL FROM:<app@rail.test> SIZE=23")
        h.receive(b"451 4.3.0 later", b"503 no", b"503 no", b"503 no")
        d = h.protocol.send(MESSAGE)
        self.assertEqual(h.sent()[0], b"RSET")
        h.receive(b"250 2.0.0 ok", b"250 ok", b"250 ok", b"250 ok", b"354 go")
        h.receive(b"250 2.0.0 queued")
        self.assertEqual(results(d)[0], ("a@dest.example", 250, "2.0.0"))
        self.assertEqual(h.protocol.messages_sent, 3)

    def test_refused_rset_ends_session(self) -> None:
        """A refused RSET leaves the server's state unknown: the session fails."""
        h = Harness()
        h.greet(*EXTENSIONS)
        h.protocol.send(MESSAGE)
        h.receive(b"550 no", b"503 no", b"503 no", b"503 no")
        d = h.protocol.send(MESSAGE)
        h.receive(b"500 5.5.1 what")
        self.assertEqual(self.failureResultOf(d, SessionError).value.reply.code, 500)
        self.assertTrue(h.aborted)

    def test_without_pipelining(self) -> None:
        """Without PIPELINING each command waits for the previous reply; a refused
        sender stops the transaction, so does having no recipient, and RSET follows."""
        h = Harness()
        h.greet(b"SIZE 0")
        d = h.protocol.send(MESSAGE)
        self.assertEqual(h.sent(), [b"MAIL FROM:<app@rail.test> SIZE=23"])
        h.receive(b"250 ok")
        self.assertEqual(h.sent(), [b"RCPT TO:<a@dest.example>"])
        h.receive(b"550 5.1.1 no")
        self.assertEqual(h.sent(), [b"RCPT TO:<b@dest.example>"])
        h.receive(b"250 ok")
        self.assertEqual(h.sent(), [b"DATA"])
        h.receive(b"354 go")
        h.transport.clear()
        h.receive(b"250 2.0.0 ok")
        self.assertEqual(
            results(d), [("a@dest.example", 550, "5.1.1"), ("b@dest.example", 250, "2.0.0")]
        )

        d = h.protocol.send(MESSAGE)
        h.sent()
        h.receive(b"250 ok", b"550 no")
        self.assertEqual(h.sent(), [b"RCPT TO:<a@dest.example>", b"RCPT TO:<b@dest.example>"])
        h.receive(b"450 no")
        self.assertEqual(h.sent(), [])
        self.assertEqual(results(d), [("a@dest.example", 550, None), ("b@dest.example", 450, None)])

        d = h.protocol.send(MESSAGE)
        self.assertEqual(h.sent(), [b"RSET"])
        h.receive(b"250 ok")
        self.assertEqual(h.sent(), [b"MAIL FROM:<app@rail.test> SIZE=23"])
        h.receive(b"452 4.3.1 full")
        self.assertEqual(h.sent(), [])
        self.assertEqual(
            results(d), [("a@dest.example", 452, "4.3.1"), ("b@dest.example", 452, "4.3.1")]
        )

    def test_one_transaction_at_a_time(self) -> None:
        """send() during a transaction, or before the session is ready, is a bug."""
        h = Harness()
        self.assertRaises(RuntimeError, h.protocol.send, MESSAGE)
        h.greet(*EXTENSIONS)
        h.protocol.send(MESSAGE)
        self.assertRaises(RuntimeError, h.protocol.send, MESSAGE)

    def test_421_ends_session(self) -> None:
        """A 421 in the middle of a transaction is the server closing: the transaction
        fails with that reply (not as a recipient's result) and the connection drops."""
        h = Harness()
        h.greet(*EXTENSIONS)
        d = h.protocol.send(MESSAGE)
        h.receive(b"250 ok", b"421 4.4.2 shutting down")
        error = self.failureResultOf(d, SessionError).value
        self.assertEqual(error.reply, Reply(421, "4.4.2", "shutting down"))
        self.assertFalse(error.after_data)
        self.assertTrue(h.aborted)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_unexpected_reply_class(self) -> None:
        """A 3xx where only 2xx/4xx/5xx make sense is a protocol error (local 451
        4.5.0), never a result a recipient could bounce on."""
        h = Harness()
        h.greet(*EXTENSIONS)
        d = h.protocol.send(MESSAGE)
        h.receive(b"354 huh")
        error = self.failureResultOf(d, SessionError).value
        self.assertEqual(
            (error.reply.code, error.reply.enhanced, error.reply.remote), (451, "4.5.0", False)
        )
        self.assertTrue(h.aborted)

    def test_unsolicited_reply(self) -> None:
        """A reply nobody asked for (an idle server timing out) ends the session; later
        sends fail at once with that reply."""
        h = Harness()
        h.greet(*EXTENSIONS)
        h.receive(b"421 4.4.2 idle too long")
        self.assertTrue(h.aborted)
        h.lose()
        self.assertTrue(h.protocol.closed)
        error = self.failureResultOf(h.protocol.send(MESSAGE), SessionError).value
        self.assertEqual(error.reply.code, 421)

    def test_cancel_send(self) -> None:
        """Cancelling a send drops the connection; the Deferred fails with CancelledError."""
        h = Harness()
        h.greet(*EXTENSIONS)
        d = h.protocol.send(MESSAGE)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(h.aborted)
        self.assertEqual(h.clock.getDelayedCalls(), [])


class ParameterTests(SynchronousTestCase):
    def test_size_limit(self) -> None:
        """Over the server's SIZE limit every recipient gets a local 552 5.3.4 and
        nothing is sent; within it, SIZE=n is declared."""
        h = Harness()
        h.greet(b"PIPELINING", b"SIZE 22")
        writes = h.transport.writes
        result = results(h.protocol.send(MESSAGE))
        self.assertEqual(
            result, [("a@dest.example", 552, "5.3.4"), ("b@dest.example", 552, "5.3.4")]
        )
        self.assertEqual(h.transport.writes, writes)
        self.assertEqual(h.protocol.messages_sent, 0)
        h = Harness()
        h.greet(b"PIPELINING", b"SIZE 23")
        h.protocol.send(MESSAGE)
        self.assertEqual(h.sent()[0], b"MAIL FROM:<app@rail.test> SIZE=23")

    def test_body_8bitmime(self) -> None:
        """BODY=8BITMIME is declared for an 8-bit message when offered, not otherwise."""
        message = attrs.evolve(MESSAGE, eight_bit=True)
        self.assertEqual(
            mail_command(message, parse_capabilities(Response(250, ("x", "8BITMIME")))),
            b"MAIL FROM:<app@rail.test> BODY=8BITMIME\r\n",
        )
        self.assertEqual(mail_command(message, Capabilities()), b"MAIL FROM:<app@rail.test>\r\n")
        self.assertEqual(
            mail_command(MESSAGE, parse_capabilities(Response(250, ("x", "8BITMIME")))),
            b"MAIL FROM:<app@rail.test>\r\n",
        )

    def test_smtputf8(self) -> None:
        """SMTPUTF8 is declared when the message needs it (flag or non-ASCII envelope)
        and offered; when not offered every recipient gets a local 553 5.6.7."""
        utf8 = Capabilities(esmtp=True, extensions={"SMTPUTF8": "", "PIPELINING": ""})
        flagged = attrs.evolve(MESSAGE, smtputf8=True)
        envelope = attrs.evolve(MESSAGE, sender="", recipients=("josé@exemple.fr",))
        self.assertEqual(mail_command(flagged, utf8), b"MAIL FROM:<app@rail.test> SMTPUTF8\r\n")
        self.assertEqual(mail_command(envelope, utf8), b"MAIL FROM:<> SMTPUTF8\r\n")
        for message in (flagged, envelope):
            refusal = local_refusal(message, Capabilities(esmtp=True))
            self.assertEqual(refusal, Reply(553, "5.6.7", refusal.text if refusal else "", False))
        h = Harness()
        h.greet(b"PIPELINING", b"SMTPUTF8")
        h.protocol.send(envelope)
        self.assertEqual(h.sent()[1], "RCPT TO:<josé@exemple.fr>".encode())
        h = Harness()
        h.greet(b"PIPELINING")
        self.assertEqual(results(h.protocol.send(envelope)), [("josé@exemple.fr", 553, "5.6.7")])
        self.assertEqual(h.sent(), [])

    def test_control_characters_in_addresses(self) -> None:
        """An envelope address with CR, LF or another control character is never sent
        (command injection): local 553 5.1.3 for every recipient."""
        h = Harness()
        h.greet(*EXTENSIONS)
        for message in (
            attrs.evolve(MESSAGE, recipients=("a@x.example>\r\nRCPT TO:<evil@y.example",)),
            attrs.evolve(MESSAGE, sender="a@x.example\n"),
            attrs.evolve(MESSAGE, recipients=("ok@x.example", "a\x00@x.example")),
        ):
            codes = {code for _, code, _ in results(h.protocol.send(message))}
            self.assertEqual(codes, {553})
        self.assertEqual(h.sent(), [])

    def test_no_recipients(self) -> None:
        """A message without recipients is an empty result; nothing is sent."""
        h = Harness()
        h.greet(*EXTENSIONS)
        self.assertEqual(results(h.protocol.send(attrs.evolve(MESSAGE, recipients=()))), [])
        self.assertEqual(h.sent(), [])


class TimeoutTests(SynchronousTestCase):
    def assertTimesOut(
        self, h: Harness, outcome: list[Any], seconds: float, *, after_data: bool
    ) -> None:
        h.clock.advance(seconds - 0.5)
        self.assertEqual(outcome, [])
        h.clock.advance(0.5)
        [failure] = outcome
        error = failure.value
        self.assertIsInstance(error, SessionError)
        self.assertEqual((error.reply.code, error.reply.enhanced), (451, "4.4.2"))
        self.assertIn("timed out", error.reply.text)
        self.assertFalse(error.reply.remote)
        self.assertEqual(error.after_data, after_data)
        self.assertTrue(h.aborted)
        h.lose()
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_greeting_timeout(self) -> None:
        """No greeting within ``greeting`` seconds fails ``ready``."""
        h = Harness()
        self.assertTimesOut(h, h.ready, TIMEOUTS.greeting, after_data=False)

    def test_ehlo_timeout(self) -> None:
        """No EHLO reply within ``other`` seconds fails ``ready``."""
        h = Harness()
        h.receive(b"220 x")
        self.assertTimesOut(h, h.ready, TIMEOUTS.other, after_data=False)

    def test_transaction_timeouts(self) -> None:
        """MAIL, RCPT, DATA and end-of-data each wait their own time, restarted by each
        reply; the last one is ``after_data`` (the server may have the message)."""
        steps: list[tuple[list[bytes], float, bool]] = [
            ([], TIMEOUTS.mail, False),
            ([b"250 ok"], TIMEOUTS.rcpt, False),
            ([b"250 ok", b"250 ok", b"250 ok"], TIMEOUTS.data_init, False),
            ([b"250 ok", b"250 ok", b"250 ok", b"354 go"], TIMEOUTS.data_end, True),
        ]
        for replies, seconds, after_data in steps:
            h = Harness()
            h.greet(*EXTENSIONS)
            outcome: list[Any] = []
            h.protocol.send(MESSAGE).addBoth(outcome.append)
            if replies:
                h.clock.advance(TIMEOUTS.mail - 1)
                h.receive(*replies)
            self.assertTimesOut(h, outcome, seconds, after_data=after_data)

    def test_quit_timeout(self) -> None:
        """QUIT without an answer still closes, after ``other`` seconds."""
        h = Harness()
        h.greet(*EXTENSIONS)
        closed = h.protocol.quit()
        h.clock.advance(TIMEOUTS.other)
        self.assertTrue(h.aborted)
        self.assertNoResult(closed)
        h.lose()
        self.assertIsNone(self.successResultOf(closed))
        self.assertEqual(h.clock.getDelayedCalls(), [])


class LargeBodyTests(SynchronousTestCase):
    def big(self) -> OutboundMessage:
        line = b"." + b"x" * 76 + b"\r\n"
        return attrs.evolve(MESSAGE, data=b"Subject: big\r\n\r\n" + line * 3000)

    def start(self) -> tuple[Harness, Deferred[MessageResult]]:
        h = Harness()
        h.greet(*EXTENSIONS)
        h.transport.window = CHUNK
        d = h.protocol.send(self.big())
        h.receive(b"250 ok", b"250 ok", b"250 ok")
        h.transport.clear()
        h.receive(b"354 go")
        return h, d

    def test_body_written_as_the_peer_reads(self) -> None:
        """A large body goes out a chunk at a time as the transport drains; each drain
        restarts the data-block timer; the bytes are exactly the dot-stuffed message."""
        h, d = self.start()
        self.assertEqual(len(h.transport.value()), CHUNK)
        stream = b""
        drains = 0
        while h.transport.producer is not None:
            h.clock.advance(TIMEOUTS.data_block - 1)
            stream += h.transport.drain()
            drains += 1
        stream += h.transport.drain()
        self.assertEqual(drains, len(dot_stuff(self.big().data)) // CHUNK)
        self.assertEqual(stream, dot_stuff(self.big().data))
        h.clock.advance(TIMEOUTS.data_end - 1)
        h.receive(b"250 2.0.0 ok")
        self.assertEqual(results(d)[0], ("a@dest.example", 250, "2.0.0"))
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_peer_stops_reading(self) -> None:
        """A peer that stops reading mid-body times out after ``data_block`` seconds;
        the final dot was not sent, so this is not ``after_data``."""
        h, d = self.start()
        h.transport.drain()
        h.clock.advance(TIMEOUTS.data_block)
        error = self.failureResultOf(d, SessionError).value
        self.assertFalse(error.after_data)
        self.assertIn("read the message", error.reply.text)

    def test_reply_before_end_of_body(self) -> None:
        """A reply before the body ended (a server refusing a too-big message) is the
        result, and the session ends: the rest of the body would be read as commands."""
        h, d = self.start()
        h.receive(b"552 5.3.4 too big")
        self.assertEqual(results(d)[0], ("a@dest.example", 552, "5.3.4"))
        self.assertTrue(h.aborted)
        self.assertIsNone(h.transport.producer)
        self.failureResultOf(h.protocol.send(MESSAGE), SessionError)

    def test_lost_mid_body(self) -> None:
        """A connection lost mid-body is not ``after_data``."""
        h, d = self.start()
        h.lose()
        self.assertFalse(self.failureResultOf(d, SessionError).value.after_data)
        self.assertEqual(h.clock.getDelayedCalls(), [])


class ConnectionTests(SynchronousTestCase):
    def test_lost_before_final_dot(self) -> None:
        """Lost while waiting for RCPT replies: a local 451 4.4.2, not ``after_data``."""
        h = Harness()
        h.greet(*EXTENSIONS)
        d = h.protocol.send(MESSAGE)
        h.receive(b"250 ok")
        h.lose()
        error = self.failureResultOf(d, SessionError).value
        self.assertEqual(
            (error.reply.code, error.reply.enhanced, error.reply.remote), (451, "4.4.2", False)
        )
        self.assertFalse(error.after_data)
        self.assertTrue(h.protocol.closed)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_lost_after_final_dot(self) -> None:
        """Lost after the final dot, before its reply: ``after_data`` (the remote may
        have taken it; the queue retries anyway)."""
        h = Harness()
        h.greet(*EXTENSIONS)
        d = h.protocol.send(MESSAGE)
        h.receive(b"250 ok", b"250 ok", b"250 ok", b"354 go")
        h.lose()
        self.assertTrue(self.failureResultOf(d, SessionError).value.after_data)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_quit(self) -> None:
        """quit() sends QUIT, closes on the reply and fires once the connection is gone;
        ``when_closed`` fires too, and nothing stays scheduled."""
        h = Harness()
        h.greet(*EXTENSIONS)
        closed = h.protocol.when_closed()
        quit = h.protocol.quit()
        self.assertEqual(h.sent(), [b"QUIT"])
        h.receive(b"221 2.0.0 bye")
        self.assertTrue(h.transport.disconnecting)
        self.assertNoResult(quit)
        h.lose(ConnectionDone())
        self.assertIsNone(self.successResultOf(quit))
        self.assertIsNone(self.successResultOf(closed))
        self.assertIsNone(self.successResultOf(h.protocol.quit()))
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_abort(self) -> None:
        """abort() drops the connection and fails the transaction in progress."""
        h = Harness()
        h.greet(*EXTENSIONS)
        d = h.protocol.send(MESSAGE)
        h.protocol.abort()
        self.failureResultOf(d, SessionError)
        self.assertTrue(h.aborted)
        self.assertEqual(h.clock.getDelayedCalls(), [])


class ReplyReaderTests(SynchronousTestCase):
    def test_multi_line_reply(self) -> None:
        """Continuation lines make one reply; a repeated enhanced code is kept once and
        the lines are joined with spaces."""
        reader = ReplyReader()
        self.assertEqual(reader.feed(b"550-5.1.1 The account does\r\n550-5.1.1 not"), ([], None))
        [response] = replies(reader, b" exist.\r\n550 5.1.1 See the FAQ\r\n")
        self.assertEqual(
            response.lines, ("5.1.1 The account does", "5.1.1 not exist.", "5.1.1 See the FAQ")
        )
        self.assertEqual(
            response.reply(), Reply(550, "5.1.1", "The account does not exist. See the FAQ")
        )

    def test_enhanced_code_extraction(self) -> None:
        """An enhanced code is taken only from the start of the text and only when its
        class matches the reply code."""
        for line, enhanced, text in (
            (b"250 2.0.0 Ok", "2.0.0", "Ok"),
            (b"250 2.0.0", "2.0.0", ""),
            (b"451 4.123.456 later", "4.123.456", "later"),
            (b"250 Ok 2.0.0", None, "Ok 2.0.0"),
            (b"550 4.1.1 mixed", None, "4.1.1 mixed"),
            (b"250 2.0.0x", None, "2.0.0x"),
            (b"250", None, ""),
            (b"250 ", None, ""),
        ):
            [response] = replies(ReplyReader(), line + b"\r\n")
            self.assertEqual(response.reply(), Reply(int(line[:3]), enhanced, text), line)

    def test_bare_lf_and_several_replies(self) -> None:
        """Replies split anywhere, or ending in bare LF, are read whole and in order."""
        reader = ReplyReader()
        stream = b"250 a\n250-b\r\n250 c\r\n354 d\r\n"
        responses = [r for i in range(len(stream)) for r in replies(reader, stream[i : i + 1])]
        self.assertEqual(
            [(r.code, r.lines) for r in responses],
            [(250, ("a",)), (250, ("b", "c")), (354, ("d",))],
        )

    def test_text_sanitized(self) -> None:
        """Control characters are replaced and bad UTF-8 shown as U+FFFD."""
        [response] = replies(ReplyReader(), b"550 a\x1b[31mb\tc\xff\r\n")
        self.assertEqual(response.reply().text, "a?[31mb c\ufffd")

    def test_garbage(self) -> None:
        """Anything but ``ddd``, ``ddd-...`` or ``ddd ...`` with a code from 200 to 599,
        and a code changing inside one reply, is a ReplyError."""
        for stream in (
            b"hello\r\n",
            b"\r\n",
            b"25 x\r\n",
            b"2500 x\r\n",
            b"250x\r\n",
            b"199 x\r\n",
            b"600 x\r\n",
            b"\xd9\xa250 x\r\n",
            b"250-a\r\n550 b\r\n",
        ):
            responses, error = ReplyReader().feed(stream)
            self.assertEqual(responses, [], stream)
            self.assertIsInstance(error, ReplyError, stream)

    def test_line_bounded(self) -> None:
        """An endless line fails as soon as it passes the limit, without waiting for a
        newline that never comes; a line just at the limit is fine."""
        [response] = replies(ReplyReader(), b"250 " + b"x" * (MAX_REPLY_LINE - 4) + b"\r\n")
        self.assertEqual(len(response.lines[0]), MAX_REPLY_LINE - 4)
        reader = ReplyReader()
        reader.feed(b"250 ")
        fed = 0
        while reader.feed(b"x" * 1024)[1] is None:
            fed += 1
        self.assertEqual(fed, MAX_REPLY_LINE // 1024 - 1)
        self.assertEqual(reader.feed(b"250 ok\r\n"), ([], None))
        _, error = ReplyReader().feed(b"250 " + b"x" * 10_000_000 + b"\r\n")
        self.assertEqual(str(error), "reply line too long")

    def test_continuations_bounded(self) -> None:
        """Endless ``250-`` lines fail after MAX_REPLY_LINES."""
        reader = ReplyReader()
        self.assertEqual(reader.feed(b"250-x\r\n" * MAX_REPLY_LINES), ([], None))
        _, error = reader.feed(b"250-x\r\n")
        self.assertEqual(str(error), "too many reply lines")

    def test_replies_before_garbage_count(self) -> None:
        """Replies completed before a malformed line are returned with the error."""
        responses, error = ReplyReader().feed(b"220 go ahead\r\n\x16\x03\x01 not a reply\r\n")
        self.assertEqual(responses, [Response(220, ("go ahead",))])
        self.assertIsInstance(error, ReplyError)

    def test_garbage_ends_session(self) -> None:
        """The client turns garbage or an oversize reply into a local 451 4.5.0 and
        drops the connection."""
        h = Harness()
        h.greet(*EXTENSIONS)
        d = h.protocol.send(MESSAGE)
        h.protocol.dataReceived(b"x" * (MAX_REPLY_LINE + 10))
        error = self.failureResultOf(d, SessionError).value
        self.assertEqual((error.reply.code, error.reply.enhanced), (451, "4.5.0"))
        self.assertTrue(h.aborted)
        h = Harness()
        h.receive(b"HTTP/1.1 400 Bad Request")
        self.assertEqual(h.ready[0].value.reply.enhanced, "4.5.0")

    def test_capabilities(self) -> None:
        """EHLO keywords are upper-cased with their parameters; SIZE 0 or a bad SIZE
        means no limit; the first line (the greeting text) is not a keyword."""
        caps = parse_capabilities(
            Response(250, ("mx hello", "size 0", "Pipelining", "X-FOO a b", ""))
        )
        self.assertEqual(dict(caps.extensions), {"SIZE": "0", "PIPELINING": "", "X-FOO": "a b"})
        self.assertIsNone(caps.size_limit)
        self.assertIsNone(parse_capabilities(Response(250, ("x", "SIZE ²"))).size_limit)
        self.assertNotIn("MX", caps)
