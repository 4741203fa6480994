"""Byte-level tests of the SMTP bounds beyond the idle timeout: command-line deadline,
idle-command limit, DATA memory budget, and the 421 at shutdown."""

from __future__ import annotations

import attrs
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from rail.policy.verdict import Reject
from rail.refusals import Refusals
from rail.smtp.budget import COPIES, DataBudget
from rail.smtp.server import RailESMTP
from tests.smtp.helpers import LIMITS, Harness, ScriptedSession

SLOW_COMMAND = b"421 4.4.2 Command line took too long; closing connection"
TOO_MANY_IDLE = b"421 4.7.0 Too many commands without mail; closing connection"
NO_MEMORY = b"452 4.3.1 Insufficient system storage; try again later"
SHUTTING_DOWN = b"421 4.3.2 Service shutting down; closing connection"
HEAD = b"MAIL FROM:<a@rail.test>\r\nRCPT TO:<b@c.example>\r\nDATA\r\n"


class BoundedHarness(Harness):
    """A Harness whose protocol has a budget and counts refusals."""

    def __init__(
        self,
        session: ScriptedSession | None = None,
        limits: object = LIMITS,
        budget: DataBudget | None = None,
    ) -> None:
        self.session = session or ScriptedSession()
        self.clock = Clock()
        self.refusals = Refusals(self.clock)
        self.budget = budget if budget is not None else DataBudget(1_000_000)
        self.transport = StringTransport(peerAddress=None)
        self.protocol = RailESMTP(
            self.session,
            hostname="mx.rail.test",
            limits=limits,  # type: ignore[arg-type]
            clock=self.clock,
            budget=self.budget,
            refusals=self.refusals,
            listener="inbound",
        )
        self.protocol.makeConnection(self.transport)
        self.greeting = self.take()

    def refused(self, reason: str) -> int:
        return self.refusals.counts.get(("inbound", reason), 0)


class CommandDeadlineTests(SynchronousTestCase):
    def test_trickled_command_line_is_cut(self) -> None:
        """A command sent one byte every 5 s without CRLF (each byte restarts the idle
        timer) is closed with 421 4.4.2 once smtp_command_timeout has passed since its
        first byte, and counted."""
        h = BoundedHarness()
        h.ehlo()
        elapsed = 0
        for byte in b"NOOP NOOP NOOP":
            h.send(bytes([byte]))
            h.clock.advance(5)
            elapsed += 5
            if h.closed:
                break
        self.assertEqual(elapsed, 30)
        self.assertEqual(h.take(), [SLOW_COMMAND])
        self.assertEqual(h.refused("smtp_command_timeout"), 1)
        h.protocol.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_deadline_is_per_line(self) -> None:
        """Each command line gets its own deadline from its first byte: lines that each
        complete in time keep the session open however long it lasts."""
        h = BoundedHarness(limits=attrs.evolve(LIMITS, idle_commands=1000))
        for _ in range(20):
            h.send(b"NO")
            h.clock.advance(20)
            h.send(b"OP\r\n")
            h.clock.advance(20)
        self.assertFalse(h.closed)
        self.assertEqual(h.codes(), [250] * 20)
        h.send(b"NO")
        h.clock.advance(29)
        self.assertFalse(h.closed)
        h.clock.advance(1)
        self.assertEqual(h.take(), [SLOW_COMMAND])

    def test_no_deadline_on_message_text(self) -> None:
        """Lines of message text are bounded by the transaction timeout, not the command
        deadline: a line still arriving after 100 s in DATA is fine."""
        h = BoundedHarness()
        h.ehlo()
        h.send(HEAD + b"Subject: slow")
        h.take()
        for _ in range(5):
            h.clock.advance(20)
            h.send(b"x")
        h.send(b"\r\n.\r\n")
        self.assertEqual(h.codes(), [250])

    def test_rail_busy_is_not_the_clients_fault(self) -> None:
        """While Rail is still answering (a slow check) and so not reading, a partial
        command behind it is not timed; its deadline starts again once Rail reads."""
        session = ScriptedSession(asynchronous=True)
        h = BoundedHarness(session)
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test>\r\nRC")
        h.clock.advance(100)
        self.assertFalse(h.closed)
        session.fire_all()
        h.send(b"PT TO:<b@c.example>\r\n")
        session.fire_all()
        self.assertEqual(h.codes(), [250, 250])
        self.assertFalse(h.closed)

    def test_timer_not_rearmed_per_packet(self) -> None:
        """A partial line arriving in many packets costs one timer, not one per packet."""
        h = BoundedHarness()
        for _ in range(10):
            h.send(b"x")
        self.assertEqual(len(h.clock.getDelayedCalls()), 2)  # idle timer and deadline


class IdleCommandTests(SynchronousTestCase):
    def test_noop_flood_closes(self) -> None:
        """NOOP every 5 s: each one answered until smtp_idle_commands of them; the next
        gets 421 4.7.0 and the session closes, counted."""
        h = BoundedHarness(limits=attrs.evolve(LIMITS, idle_commands=10))
        for _ in range(20):
            h.send(b"NOOP\r\n")
            h.clock.advance(5)
        self.assertEqual(h.take(), [b"250 2.0.0 Ok"] * 10 + [TOO_MANY_IDLE])
        self.assertTrue(h.closed)
        self.assertEqual(h.refused("smtp_idle_commands"), 1)

    def test_every_idle_verb_counts(self) -> None:
        """RSET, VRFY, EXPN, HELP, EHLO and HELO count as NOOP does; MAIL, RCPT and DATA
        do not."""
        h = BoundedHarness(limits=attrs.evolve(LIMITS, idle_commands=7, bad_commands=100))
        h.send(b"EHLO a.example\r\nHELO a.example\r\nNOOP\r\nRSET\r\nVRFY x\r\nEXPN x\r\nHELP\r\n")
        h.send(b"MAIL FROM:<a@rail.test>\r\nRCPT TO:<b@c.example>\r\n")
        self.assertFalse(h.closed)
        h.take()
        h.send(b"RSET\r\n")
        self.assertEqual(h.take(), [TOO_MANY_IDLE])

    def test_accepted_message_restarts_count(self) -> None:
        """A session that delivers mail may go on: each accepted message starts the count
        again (RSET between messages is what many clients send)."""
        h = BoundedHarness(limits=attrs.evolve(LIMITS, idle_commands=3))
        h.ehlo()  # 1
        for _ in range(10):
            h.send(b"RSET\r\nNOOP\r\n" + h.transaction())
        self.assertEqual(h.codes(), [250, 250, 250, 250, 354, 250] * 10)
        self.assertEqual(len(h.session.delivered), 10)

    def test_refused_message_does_not_restart_count(self) -> None:
        """A message refused at the end of DATA does not reset the count."""
        session = ScriptedSession()
        session.deliver_failure = RuntimeError("refused")
        h = BoundedHarness(session, limits=attrs.evolve(LIMITS, idle_commands=3))
        h.send(b"EHLO a.example\r\nRSET\r\n" + h.transaction() + b"NOOP\r\nNOOP\r\n")
        self.assertEqual(h.take()[-1], TOO_MANY_IDLE)
        self.flushLoggedErrors(RuntimeError)


class DataBudgetTests(SynchronousTestCase):
    def test_budget_charged_while_buffering_and_storing(self) -> None:
        """The buffered message is charged to the budget (COPIES times its size, for the
        copies made while it is checked and stored) until the session's reply for it
        (storage is asynchronous); then all of it is given back."""
        session = ScriptedSession(asynchronous=True)
        h = BoundedHarness(session)
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test>\r\n")
        session.fire_all()
        h.send(b"RCPT TO:<b@c.example>\r\n")
        session.fire_all()
        h.send(b"DATA\r\n" + b"x" * 98 + b"\r\n")
        self.assertEqual(h.budget.used, 100 * COPIES)
        h.send(b".\r\n")
        self.assertEqual(h.budget.used, 100 * COPIES)
        session.fire_all()
        self.assertEqual(h.codes(), [250, 250, 354, 250])
        self.assertEqual(h.budget.used, 0)

    def test_spent_budget_refuses_data_command(self) -> None:
        """With nothing left (or less than the declared SIZE), DATA itself is answered
        452 4.3.1, before the client sends the message; the session goes on."""
        budget = DataBudget(1000 * COPIES)
        h = BoundedHarness(budget=budget)
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test> SIZE=1001\r\nRCPT TO:<b@c.example>\r\nDATA\r\n")
        self.assertEqual(h.take()[-1], NO_MEMORY)
        self.assertEqual(budget.used, 0)
        budget.reserve(1000 * COPIES)
        h.send(b"RSET\r\n" + HEAD)
        self.assertEqual(h.take()[-1], NO_MEMORY)
        self.assertFalse(h.closed)
        self.assertEqual(h.refused("data_memory"), 2)

    def test_declared_size_not_reserved(self) -> None:
        """A declared SIZE is checked against what is left when DATA is answered, but
        nothing is reserved until bytes arrive: a client cannot hold memory by declaring
        a size and sending nothing."""
        budget = DataBudget(1000 * COPIES)
        h = BoundedHarness(budget=budget)
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test> SIZE=900\r\nRCPT TO:<b@c.example>\r\nDATA\r\n")
        self.assertEqual(h.take()[-1][:3], b"354")
        self.assertEqual(budget.used, 0)
        other = BoundedHarness(budget=budget)
        other.ehlo()
        other.send(b"MAIL FROM:<a@rail.test> SIZE=200\r\nRCPT TO:<b@c.example>\r\nDATA\r\n")
        self.assertEqual(other.take()[-1][:3], b"354")
        h.send(b"y" * 800 + b"\r\n.\r\n")
        self.assertEqual(h.codes(), [250])
        self.assertEqual(budget.used, 0)

    def test_budget_spent_mid_data(self) -> None:
        """A message that outgrows what is left is read to its end without being kept,
        its memory given back at once, and answered 452 4.3.1; nothing is delivered and
        the session goes on."""
        budget = DataBudget(1500 * COPIES)
        h = BoundedHarness(budget=budget)
        h.ehlo()
        h.send(HEAD + (b"z" * 998 + b"\r\n"))
        self.assertEqual(budget.used, 1000 * COPIES)
        h.send(b"z" * 998 + b"\r\n")
        self.assertEqual(budget.used, 0)
        h.send(b"more\r\n" * 100 + b".\r\n")
        self.assertEqual(h.take()[-1], NO_MEMORY)
        self.assertEqual(h.session.delivered, [])
        self.assertFalse(h.closed)
        h.send(h.transaction())
        self.assertEqual(h.codes(), [250, 250, 354, 250])
        self.assertEqual(budget.used, 0)

    def test_released_on_every_path(self) -> None:
        """Whatever ends the message (too big, a framing fault, the transaction timeout,
        the connection dropping, a storage failure, a bug in the session) gives its
        memory back."""
        budget = DataBudget(1_000_000)

        def start(session: ScriptedSession | None = None) -> BoundedHarness:
            h = BoundedHarness(session, budget=budget)
            h.ehlo()
            h.send(HEAD + b"line\r\n" * 100)
            self.assertEqual(budget.used, 600 * COPIES)
            return h

        h = start()
        h.send((b"y" * 998 + b"\r\n") * 10)  # over 10,000 octets with the first 600
        self.assertEqual(budget.used, 0)
        h.send(b".\r\n")
        self.assertEqual(h.take()[-1][:9], b"552 5.3.4")

        h = start()
        h.send(b"bare\nlf\r\n")
        self.assertTrue(h.closed)
        self.assertEqual(budget.used, 0)

        h = start()
        h.clock.advance(600)
        self.assertEqual(h.take()[-1][:9], b"421 4.4.2")
        self.assertEqual(budget.used, 0)

        h = start()
        h.protocol.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(budget.used, 0)

        h = start()
        h.clock.advance(300)  # idle
        self.assertTrue(h.closed)
        self.assertEqual(budget.used, 0)

        session = ScriptedSession(asynchronous=True)
        session.deliver_failure = OSError("EIO")
        h = BoundedHarness(session, budget=budget)
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test>\r\n")
        session.fire_all()
        h.send(b"RCPT TO:<b@c.example>\r\n")
        session.fire_all()
        h.send(b"DATA\r\nbody\r\n.\r\n")
        h.protocol.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(budget.used, 6 * COPIES)  # still held: the message is being stored
        session.fire_all()
        self.assertEqual(budget.used, 0)
        self.flushLoggedErrors(OSError)

        h = start()
        h.session.deliver = lambda *a: 1 / 0  # type: ignore[method-assign,assignment,misc]
        h.send(b".\r\n")
        self.assertEqual(h.take()[-1][:9], b"451 4.3.0")
        self.assertEqual(budget.used, 0)
        self.flushLoggedErrors(ZeroDivisionError)

    def test_many_sessions_share_one_budget(self) -> None:
        """Sessions streaming at once never hold more than the budget together; those
        that cannot get memory are told 452 4.3.1, the rest get 250."""
        budget = DataBudget(50_000 * COPIES)
        sessions = [BoundedHarness(budget=budget) for _ in range(20)]
        for h in sessions:
            h.ehlo()
            h.send(HEAD)
        chunk = b"w" * 998 + b"\r\n"
        peak = 0
        for _ in range(9):
            for h in sessions:
                h.send(chunk)
                peak = max(peak, budget.used)
        for h in sessions:
            h.send(b".\r\n")
        last = [h.take()[-1][:3] for h in sessions]
        self.assertLessEqual(peak, 50_000 * COPIES)
        self.assertEqual(last.count(b"250") + last.count(b"452"), 20)
        self.assertGreaterEqual(last.count(b"250"), 5)
        self.assertEqual(budget.used, 0)


class ShutdownTests(SynchronousTestCase):
    def test_idle_session_gets_421(self) -> None:
        """Between commands, shutdown() answers 421 4.3.2 and closes at once."""
        h = BoundedHarness()
        h.ehlo()
        h.protocol.shutdown()
        self.assertEqual(h.take(), [SHUTTING_DOWN])
        self.assertTrue(h.closed)
        h.protocol.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_partial_command_gets_421(self) -> None:
        """A command still arriving is not a transaction: 421 at once."""
        h = BoundedHarness()
        h.send(b"EHLO a.exa")
        h.protocol.shutdown()
        self.assertEqual(h.take(), [SHUTTING_DOWN])

    def test_transaction_in_data_finishes_first(self) -> None:
        """A session in DATA finishes its message, gets its 250 once stored, then 421
        4.3.2; commands pipelined after the message are not run."""
        session = ScriptedSession(asynchronous=True)
        h = BoundedHarness(session)
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test>\r\n")
        session.fire_all()
        h.send(b"RCPT TO:<b@c.example>\r\n")
        session.fire_all()
        h.send(b"DATA\r\npart one\r\n")
        h.take()
        h.protocol.shutdown()
        self.assertFalse(h.closed)
        h.send(b"part two\r\n.\r\nMAIL FROM:<a@rail.test>\r\n")
        self.assertEqual(h.take(), [])
        session.fire_all()
        self.assertEqual(h.take(), [b"250 2.0.0 Ok: queued as X", SHUTTING_DOWN])
        self.assertTrue(h.closed)
        self.assertEqual(session.delivered[0][1], b"part one\r\npart two\r\n")

    def test_transaction_after_mail_may_continue(self) -> None:
        """After MAIL the client may still add recipients and send its message; RSET
        ends the transaction and with it the session (421 after the RSET's 250)."""
        h = BoundedHarness()
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test>\r\n")
        h.protocol.shutdown()
        h.send(b"RCPT TO:<b@c.example>\r\nDATA\r\nhi\r\n.\r\n")
        self.assertEqual(h.take()[-2:], [b"250 2.0.0 Ok: queued as X", SHUTTING_DOWN])
        h = BoundedHarness()
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test>\r\n")
        h.protocol.shutdown()
        h.send(b"RSET\r\n")
        self.assertEqual(h.take()[-2:], [b"250 2.0.0 Ok", SHUTTING_DOWN])

    def test_refused_mail_during_shutdown_closes(self) -> None:
        """A MAIL that was being checked when shutdown came is answered; if refused, no
        transaction is under way and 421 follows."""
        session = ScriptedSession(asynchronous=True)
        session.mail_verdict = Reject(550, "5.7.1", "No")
        h = BoundedHarness(session)
        h.ehlo()
        h.send(b"MAIL FROM:<a@rail.test>\r\n")
        h.protocol.shutdown()
        self.assertFalse(h.closed)
        session.fire_all()
        self.assertEqual(h.take(), [b"550 5.7.1 No", SHUTTING_DOWN])

    def test_shutdown_twice_and_after_close(self) -> None:
        """shutdown() on a closed or closing session writes nothing more."""
        h = BoundedHarness()
        h.protocol.shutdown()
        h.take()
        h.protocol.shutdown()
        h.protocol.connectionLost(None)  # type: ignore[arg-type]
        h.protocol.shutdown()
        self.assertEqual(h.take(), [])
