"""Byte-level tests of RailESMTP: framing, ordering, extensions, limits and timeouts."""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from rail.policy.verdict import Reject
from tests.smtp.helpers import ENHANCED, LIMITS, REPLY, Harness, ScriptedSession

TEXT_TOO_LONG = b"500 5.6.0 Message line too long; encode lines over 998 octets"

SMUGGLE = b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\nforged\r\n.\r\n"


class GreetingTests(SynchronousTestCase):
    def test_greeting_names_host(self) -> None:
        """The 220 greeting names the configured host, not the machine's DNS name."""
        self.assertEqual(Harness().greeting, [b"220 mx.rail.test ESMTP Rail"])

    def test_ehlo_advertises_extensions(self) -> None:
        """EHLO lists PIPELINING, SIZE with the limit, 8BITMIME, ENHANCEDSTATUSCODES and
        SMTPUTF8, and no STARTTLS when none is configured."""
        h = Harness()
        h.send(b"EHLO client.example\r\n")
        self.assertEqual(
            h.take(),
            [
                b"250-mx.rail.test Hello client.example",
                b"250-PIPELINING",
                b"250-SIZE 10000",
                b"250-8BITMIME",
                b"250-ENHANCEDSTATUSCODES",
                b"250 SMTPUTF8",
            ],
        )

    def test_helo_argument_validated(self) -> None:
        """HELO/EHLO need a host name or address literal; junk gets 501 5.5.4."""
        for argument in (b"", b"bad host", b"a..b", b"<script>", b"[1.2.3]", b"x\x01y"):
            h = Harness()
            h.send(b"EHLO " + argument + b"\r\n")
            self.assertEqual(h.take()[0][:9], b"501 5.5.4", argument)
        for argument in (b"localhost", b"[127.0.0.1]", b"[IPv6:::1]", b"WIN_PC", b"a.example."):
            h = Harness()
            h.send(b"HELO " + argument + b"\r\n")
            self.assertEqual(h.take()[0][:4], b"250 ", argument)

    def test_mail_requires_helo(self) -> None:
        """MAIL before EHLO/HELO is a bad sequence (503 5.5.1)."""
        h = Harness()
        h.send(b"MAIL FROM:<a@rail.test>\r\n")
        self.assertEqual(h.take(), [b"503 5.5.1 Send EHLO or HELO first"])


class TransactionTests(SynchronousTestCase):
    def test_message_bytes_and_dot_unstuffing(self) -> None:
        """The session gets the CRLF message with leading dots unstuffed, exactly."""
        h = Harness()
        h.ehlo()
        h.send(h.transaction(b"Subject: x\r\n\r\n..leading dot\r\n.\x80\r\nend\r\n"))
        self.assertEqual(h.codes(), [250, 250, 354, 250])
        [(envelope, data)] = h.session.delivered
        self.assertEqual(data, b"Subject: x\r\n\r\n.leading dot\r\n\x80\r\nend\r\n")
        self.assertEqual(envelope.sender, "app@rail.test")
        self.assertEqual(envelope.recipients, ("to@dest.example",))

    def test_every_reply_has_enhanced_code(self) -> None:
        """After the greeting and EHLO, every 2xx/4xx/5xx reply carries an RFC 3463 code."""
        h = Harness(limits=attrs.evolve(LIMITS, bad_commands=100))
        h.ehlo()
        h.send(
            b"NOOP\r\nVRFY x\r\nHELP\r\nEXPN x\r\nRSET\r\nRCPT TO:<a@b.example>\r\nDATA\r\n"
            b"FOO\r\nMAIL FROM:<a@b.example> X=1\r\n" + h.transaction() + b"QUIT\r\n"
        )
        lines = h.take()
        self.assertEqual(len(lines), 14)
        for line in lines:
            if not line.startswith(b"354"):
                self.assertRegex(line, ENHANCED)

    def test_rset_noop_vrfy_quit(self) -> None:
        """RSET clears the transaction; NOOP is 250; VRFY is 252; QUIT is 221 and closes."""
        h = Harness()
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test>\r\nRSET\r\nRCPT TO:<b@c.example>\r\nNOOP\r\n")
        self.assertEqual(h.codes(), [250, 250, 503, 250])
        h.send(b"VRFY someone\r\nQUIT\r\n")
        self.assertEqual(
            h.take(),
            [
                b"252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery",
                b"221 2.0.0 Bye",
            ],
        )
        self.assertTrue(h.closed)

    def test_sequence_errors(self) -> None:
        """RCPT without MAIL, DATA without RCPT and a nested MAIL are 503 5.5.1."""
        h = Harness()
        h.ehlo()
        h.send(b"RCPT TO:<b@c.example>\r\nMAIL FROM:<a@rail.test>\r\nDATA\r\n")
        h.send(b"MAIL FROM:<a@rail.test>\r\n")
        self.assertEqual(
            h.take(),
            [
                b"503 5.5.1 Send MAIL first",
                b"250 2.1.0 Sender ok",
                b"503 5.5.1 Send RCPT first",
                b"503 5.5.1 Nested MAIL command",
            ],
        )

    def test_recipient_limit(self) -> None:
        """Recipients beyond the limit get 452 4.5.3; the accepted ones still get mail."""
        h = Harness()
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test>\r\n")
        for n in range(5):
            h.send(b"RCPT TO:<r%d@d.example>\r\n" % n)
        h.send(b"DATA\r\nx\r\n.\r\n")
        self.assertEqual(h.codes(), [250, 250, 250, 250, 452, 452, 354, 250])
        self.assertEqual(len(h.session.delivered[0][0].recipients), 3)

    def test_session_rejections_pass_through(self) -> None:
        """A session's Reject becomes the reply, code and enhanced code intact."""
        session = ScriptedSession()
        session.mail_verdict = Reject(550, "5.7.1", "Sender not authorized")
        h = Harness(session)
        h.ehlo()
        h.send(b"MAIL FROM:<x@rail.test>\r\n")
        self.assertEqual(h.take(), [b"550 5.7.1 Sender not authorized"])

    def test_storage_failure_is_temporary(self) -> None:
        """Any failure storing the message answers 451 4.3.0, never 5xx (stock: 550)."""
        session = ScriptedSession()
        session.deliver_failure = RuntimeError("disk on fire")
        h = Harness(session)
        h.ehlo()
        h.send(h.transaction())
        self.assertEqual(
            h.take()[-1], b"451 4.3.0 Requested action aborted: local error in processing"
        )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertFalse(h.closed)


class ParameterTests(SynchronousTestCase):
    def _mail(self, line: bytes) -> bytes:
        h = Harness()
        h.ehlo()
        h.send(line + b"\r\n")
        return h.take()[0]

    def test_size_parameter(self) -> None:
        """MAIL SIZE= over the limit is 552 5.3.4; within it, accepted."""
        self.assertEqual(self._mail(b"MAIL FROM:<a@rail.test> SIZE=10001")[:9], b"552 5.3.4")
        self.assertEqual(self._mail(b"MAIL FROM:<a@rail.test> SIZE=10000")[:9], b"250 2.1.0")
        self.assertEqual(self._mail(b"MAIL FROM:<a@rail.test> SIZE=big")[:9], b"501 5.5.4")

    def test_body_and_smtputf8(self) -> None:
        """BODY=8BITMIME/7BIT and SMTPUTF8 are accepted; BODY=BINARYMIME is not."""
        self.assertEqual(self._mail(b"MAIL FROM:<a@rail.test> BODY=8BITMIME SMTPUTF8")[:3], b"250")
        self.assertEqual(self._mail(b"MAIL FROM:<a@rail.test> BODY=7BIT")[:3], b"250")
        self.assertEqual(self._mail(b"MAIL FROM:<a@rail.test> BODY=BINARYMIME")[:9], b"555 5.5.4")
        self.assertEqual(self._mail("MAIL FROM:<é@rail.test> SMTPUTF8".encode())[:3], b"250")
        self.assertEqual(self._mail("MAIL FROM:<é@rail.test>".encode())[:9], b"553 5.6.7")

    def test_unknown_parameters(self) -> None:
        """Unknown MAIL or RCPT parameters are 555 5.5.4 (stock Twisted ignores them)."""
        self.assertEqual(self._mail(b"MAIL FROM:<a@rail.test> AUTH=<>")[:9], b"555 5.5.4")
        h = Harness()
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test>\r\nRCPT TO:<b@c.example> NOTIFY=NEVER\r\n")
        self.assertEqual(h.take()[1][:9], b"555 5.5.4")

    def test_parameters_need_ehlo(self) -> None:
        """After HELO (not EHLO) no parameter is allowed."""
        h = Harness()
        h.send(b"HELO c.example\r\nMAIL FROM:<a@rail.test> SIZE=10\r\n")
        self.assertEqual(h.take()[1][:9], b"555 5.5.4")

    def test_bad_addresses(self) -> None:
        """Paths need angle brackets and a valid mailbox."""
        for line in (
            b"MAIL FROM:a@rail.test",
            b"MAIL FROM:<a@@rail.test>",
            b"MAIL FROM:<a@rail..test>",
            b"MAIL FROM:<a b@rail.test>",
            b"MAIL TO:<a@rail.test>",
        ):
            self.assertEqual(self._mail(line)[:1], b"5", line)

    def test_real_size_enforced(self) -> None:
        """A message over the limit without SIZE= is read to its end, refused with
        552 5.3.4, and nothing reaches the session."""
        h = Harness()
        h.ehlo()
        h.send(h.transaction((b"y" * 990 + b"\r\n") * 11))
        self.assertEqual(h.take()[-1], b"552 5.3.4 Message size exceeds fixed maximum message size")
        self.assertEqual(h.session.delivered, [])
        self.assertFalse(h.closed)


class FramingTests(SynchronousTestCase):
    def _smuggle(self, payload: bytes) -> Harness:
        h = Harness()
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test>\r\nRCPT TO:<b@c.example>\r\nDATA\r\n")
        h.take()
        h.send(payload)
        return h

    def test_bare_lf_dot_smuggling(self) -> None:
        """``line1\\n.\\r\\n`` followed by smuggled commands: 500 5.5.2, closed, and no
        message at all is delivered."""
        h = self._smuggle(b"line1\n.\r\n" + SMUGGLE)
        self.assertEqual(h.take(), [b"500 5.5.2 Bare LF not allowed; lines must end with CRLF"])
        self.assertTrue(h.closed)
        self.assertEqual(h.session.delivered, [])

    def test_other_smuggling_variants(self) -> None:
        """Bare CR and LF dot variants and NUL in DATA all close the session."""
        for payload in (
            b"line1\n.\n" + SMUGGLE,
            b"line1\r.\r\n" + SMUGGLE,
            b"line1\r\n.\n" + SMUGGLE,
            b"line1\r\n.\r" + SMUGGLE,
            b"a\x00b\r\n.\r\n",
        ):
            h = self._smuggle(payload)
            self.assertEqual(h.take()[0][:9], b"500 5.5.2", payload)
            self.assertTrue(h.closed)
            self.assertEqual(h.session.delivered, [])

    def test_bare_lf_in_command(self) -> None:
        """A bare LF in command mode (EHLO x\\nMAIL ...) closes instead of merging."""
        h = Harness()
        h.send(b"EHLO x.test\nMAIL FROM:<a@x.test>\r\n")
        self.assertEqual(h.take()[0][:9], b"500 5.5.2")
        self.assertTrue(h.closed)

    def test_bare_cr_in_command(self) -> None:
        """``RCPT TO:<b@y.test>\\rDATA`` is refused, not read as RCPT parameters."""
        h = Harness()
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test>\r\nRCPT TO:<b@y.test>\rDATA\r\n")
        self.assertEqual(
            h.take(),
            [b"250 2.1.0 Sender ok", b"500 5.5.2 Bare CR not allowed; lines must end with CRLF"],
        )
        self.assertTrue(h.closed)

    def test_long_line_in_data_then_commands(self) -> None:
        """A 20 KB line in DATA closes the session with 500 5.6.0 (a content fault: lines
        of a message are at most 998 octets); commands in the next segment are never
        executed (stock Twisted runs them)."""
        h = self._smuggle(b"x" * 20_000 + b"\r\n")
        self.assertEqual(h.take(), [TEXT_TOO_LONG])
        self.assertTrue(h.closed)
        h.send(SMUGGLE)
        self.assertEqual(h.take(), [])
        self.assertEqual(h.session.delivered, [])

    def test_line_length_boundary(self) -> None:
        """998 octets plus CRLF is a legal line; 999 is not."""
        h = self._smuggle(b"a" * 998 + b"\r\n.\r\n")
        self.assertEqual(h.codes(), [250])
        h = self._smuggle(b"a" * 999 + b"\r\n.\r\n")
        self.assertEqual(h.take(), [TEXT_TOO_LONG])

    def test_dot_stuffed_line_of_1001_octets(self) -> None:
        """A 998-octet text line starting with a dot arrives dot-stuffed as 999 octets plus
        CRLF (1001 on the wire): accepted and unstuffed (RFC 5321 §4.5.3.1.6 does not count
        the transparency dot). One octet more is refused, with 500 5.6.0."""
        line = b"." + b"d" * 997
        h = self._smuggle(b"." + line + b"\r\nend\r\n.\r\n")
        self.assertEqual(h.codes(), [250])
        self.assertEqual(h.session.delivered[0][1], line + b"\r\nend\r\n")
        for split in (1, 500, 999, 1000):  # the same across packet boundaries
            data = b"." + line + b"\r\n.\r\n"
            h = self._smuggle(data[:split])
            h.send(data[split:])
            self.assertEqual(h.codes(), [250], split)
        h = self._smuggle(b".." + line + b"\r\n.\r\n")
        self.assertEqual(h.take(), [TEXT_TOO_LONG])
        self.assertTrue(h.closed)
        self.assertEqual(h.session.delivered, [])

    def test_long_command_line(self) -> None:
        """A command line over 1000 octets is a syntax error, 500 5.5.2 (RFC 5321
        §4.5.3.1's "500 Line too long"), and closes the session."""
        h = Harness()
        h.send(b"EHLO " + b"a" * 1000 + b"\r\n")
        self.assertEqual(h.take(), [b"500 5.5.2 Line too long"])
        self.assertTrue(h.closed)

    def test_endless_line_is_bounded(self) -> None:
        """200 MB without a newline: refused at the first chunk over the limit, the
        buffer never exceeds one line, and the rest is ignored without work."""
        h = Harness()
        chunk = b"A" * 65536
        for _ in range(200 * 16):
            h.send(chunk)
            self.assertLessEqual(h.protocol._framer.buffered, 1000)
        self.assertEqual(h.take(), [b"500 5.5.2 Line too long"])
        self.assertTrue(h.closed)

    def test_http_request_closes(self) -> None:
        """An HTTP request sent to the SMTP port is answered once and closed."""
        h = Harness()
        h.send(b"GET / HTTP/1.1\r\nHost: rail.test\r\n\r\n")
        self.assertEqual(
            h.take(), [b"500 5.5.1 This is an SMTP server, not HTTP; closing connection"]
        )
        self.assertTrue(h.closed)
        for verb in (b"POST", b"HEAD", b"PUT", b"CONNECT"):
            h = Harness()
            h.send(verb + b" /x HTTP/1.1\r\n")
            self.assertTrue(h.closed, verb)

    def test_bad_command_limit(self) -> None:
        """After ``bad_commands`` errors the session ends with 421 4.7.0."""
        h = Harness()
        h.send(b"FOO\r\n" * 10)
        lines = h.take()
        self.assertEqual(lines[:5], [b"500 5.5.1 Command unrecognized"] * 5)
        self.assertEqual(lines[5:], [b"421 4.7.0 Too many errors; closing connection"])
        self.assertTrue(h.closed)


class PipeliningTests(SynchronousTestCase):
    def test_replies_in_order_with_asynchronous_session(self) -> None:
        """A fully pipelined transaction with slow validators and storage: reading pauses
        while a reply is pending, and replies come in command order."""
        session = ScriptedSession(asynchronous=True)
        h = Harness(session)
        h.ehlo()
        session.rcpt_verdicts["no@d.example"] = Reject(550, "5.1.1", "No such user")
        h.send(
            b"NOOP\r\nMAIL FROM:<a@rail.test> SIZE=99999\r\nMAIL FROM:<a@rail.test>\r\n"
            b"RCPT TO:<ok@d.example>\r\nRCPT TO:<no@d.example>\r\nDATA\r\nbody\r\n.\r\n"
            b"MAIL FROM:<a@rail.test>\r\nRCPT TO:<ok@d.example>\r\nDATA\r\nb2\r\n.\r\nQUIT\r\n"
        )
        seen: list[bytes] = h.take()
        self.assertEqual(h.transport.producerState, "paused")
        while session.pending:
            d, value = session.pending.pop(0)
            d.callback(value)
            seen += h.take()
        self.assertEqual(
            [line[:9] for line in seen],
            [
                b"250 2.0.0",
                b"552 5.3.4",
                b"250 2.1.0",
                b"250 2.1.5",
                b"550 5.1.1",
                b"354 End d",
                b"250 2.0.0",
                b"250 2.1.0",
                b"250 2.1.5",
                b"354 End d",
                b"250 2.0.0",
                b"221 2.0.0",
            ],
        )
        self.assertEqual([data for _, data in session.delivered], [b"body\r\n", b"b2\r\n"])

    def test_asynchronous_storage_failure(self) -> None:
        """A storage failure arriving later is still 451 4.3.0 and in order."""
        session = ScriptedSession(asynchronous=True)
        session.deliver_failure = OSError("EIO")
        h = Harness(session)
        h.ehlo()
        h.send(h.transaction() + b"NOOP\r\n")
        session.fire_all()
        self.assertEqual(h.codes(), [250, 250, 354, 451, 250])
        self.flushLoggedErrors(OSError)

    def test_reading_pauses_only_when_input_waits(self) -> None:
        """A pending reply alone does not pause reading (a client that does not pipeline
        sends nothing until it has the reply); input arriving behind it pauses reading
        until the reply is out, and then waits its turn."""
        session = ScriptedSession(asynchronous=True)
        h = Harness(session)
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test>\r\n")
        self.assertEqual(h.transport.producerState, "producing")
        h.send(b"NO")
        self.assertEqual(h.transport.producerState, "paused")
        h.send(b"OP\r\n")
        self.assertEqual(h.take(), [])
        session.fire_all()
        self.assertEqual(h.codes(), [250, 250])
        self.assertEqual(h.transport.producerState, "producing")

    def test_synchronous_answer_does_not_pause(self) -> None:
        """A session answering at once (an already fired Deferred) never pauses the
        transport."""
        h = Harness(ScriptedSession())
        h.ehlo()
        states: list[str] = []
        pause = h.transport.pauseProducing
        h.transport.pauseProducing = lambda: (states.append("paused"), pause())[1]  # type: ignore[method-assign]
        h.send(h.transaction())
        self.assertEqual(h.codes(), [250, 250, 354, 250])
        self.assertEqual(states, [])


class TimeoutTests(SynchronousTestCase):
    def test_idle_timeout(self) -> None:
        """An idle session is closed with 421 4.4.2 after limits.smtp_idle_timeout."""
        h = Harness()
        h.clock.advance(299)
        self.assertFalse(h.closed)
        h.clock.advance(1)
        self.assertEqual(h.take(), [b"421 4.4.2 Idle timeout; closing connection"])
        self.assertTrue(h.closed)

    def test_activity_resets_idle_timeout(self) -> None:
        """Each command restarts the idle timer."""
        h = Harness()
        h.clock.advance(200)
        h.send(b"NOOP\r\n")
        h.clock.advance(200)
        self.assertFalse(h.closed)

    def test_transaction_timeout(self) -> None:
        """A transaction trickled slower than smtp_transaction_timeout is closed."""
        h = Harness()
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test>\r\nRCPT TO:<b@c.example>\r\nDATA\r\n")
        for _ in range(7):
            h.clock.advance(100)
            h.send(b"line\r\n")
        self.assertEqual(h.take()[-1], b"421 4.4.2 Transaction took too long; closing connection")
        self.assertEqual(h.session.delivered, [])

    def test_nothing_left_scheduled(self) -> None:
        """After the connection ends no timer is left on the clock."""
        h = Harness()
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test>\r\nQUIT\r\n")
        h.protocol.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(h.clock.getDelayedCalls(), [])


class ReplyFormatTests(SynchronousTestCase):
    def test_reply_lines_are_well_formed(self) -> None:
        """Every reply line is ``ddd<SP or ->text`` with CRLF."""
        h = Harness(limits=attrs.evolve(LIMITS, bad_commands=100))
        h.send(b"EHLO a.example\r\n" + h.transaction() + b"BOGUS\r\nQUIT\r\n")
        for line in h.take():
            self.assertRegex(line, REPLY)


class ResourceTests(SynchronousTestCase):
    def test_replies_wait_for_a_reading_peer(self) -> None:
        """When the transport says the peer stopped reading (producer paused), Rail stops
        reading and answering; pipelined NOOPs cannot make it buffer replies."""
        h = Harness(limits=attrs.evolve(LIMITS, idle_commands=10_000))
        h.ehlo()
        h.protocol.pauseProducing()
        # Reading goes on while nothing waits (a TLS handshake blocks writes too)...
        self.assertEqual(h.transport.producerState, "producing")
        h.send(b"NOOP\r\n" * 1000)
        # ...and stops once commands wait for the peer to read their replies.
        self.assertEqual(h.transport.producerState, "paused")
        self.assertEqual(h.take(), [])
        h.protocol.resumeProducing()
        self.assertEqual(len(h.take()), 1000)
        self.assertEqual(h.transport.producerState, "producing")

    def test_duplicate_recipient_is_one(self) -> None:
        """The same mailbox twice (domain in other case) is accepted once and stored
        once, and does not count twice against the recipient limit."""
        h = Harness()
        h.ehlo()
        h.send(
            b"MAIL FROM:<a@rail.test>\r\nRCPT TO:<x@d.example>\r\nRCPT TO:<x@D.EXAMPLE>\r\n"
            b"RCPT TO:<X@d.example>\r\nDATA\r\nbody\r\n.\r\n"
        )
        self.assertEqual(h.codes(), [250, 250, 250, 250, 354, 250])
        self.assertEqual(h.session.delivered[0][0].recipients, ("x@d.example", "X@d.example"))

    def test_ipv6_zone_literal_refused(self) -> None:
        """An IPv6 literal with a zone id (ASCII or not) is refused, not crashed on."""
        for argument in (b"[IPv6:fe80::1%\xff]", b"[IPv6:fe80::1%x);(evil]"):
            h = Harness()
            h.send(b"EHLO " + argument + b"\r\n")
            self.assertEqual(h.take()[0][:9], b"501 5.5.4")

    def test_unexpected_error_closes_with_451(self) -> None:
        """A bug while handling a command answers 451 4.3.0 and closes, logged; a failed
        asynchronous check answers 451 4.3.0 and the session goes on."""
        h = Harness()
        h.ehlo()

        def broken(*args: object) -> None:
            raise ZeroDivisionError()

        h.session.check_mail = broken  # type: ignore[method-assign]
        h.send(b"MAIL FROM:<a@rail.test>\r\n")
        self.assertEqual(h.take()[0][:9], b"451 4.3.0")
        self.assertFalse(h.closed)
        h.protocol._noop = broken  # type: ignore[method-assign,assignment]
        h.send(b"NOOP\r\n")
        self.assertEqual(h.take()[0][:9], b"451 4.3.0")
        self.assertTrue(h.closed)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)

    def test_late_verdict_after_disconnect_arms_nothing(self) -> None:
        """A MAIL verdict that arrives after the client left sends nothing and leaves no
        transaction timer behind."""
        session = ScriptedSession(asynchronous=True)
        h = Harness(session)
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test>\r\n")
        h.protocol.connectionLost(None)  # type: ignore[arg-type]
        session.fire_all()
        self.assertEqual(h.take(), [])
        self.assertEqual(h.clock.getDelayedCalls(), [])
