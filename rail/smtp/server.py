"""Rail's ESMTP server protocol: twisted.mail's ESMTP with the fixes it needs on a network.

Kept from twisted.mail: the connection plumbing, greeting, idle timeout (TimeoutMixin),
EHLO extension listing and STARTTLS transport switch. Replaced, because the stock versions
are unsafe (``shared/notes/twisted-probe.md``):

- input framing (:mod:`rail.smtp.framing`): CRLF only, bounded lines, close on violation;
- command dispatch: one command at a time; while a reply is pending (validators and
  storage are asynchronous) later pipelined commands wait, so replies always come in
  order, and reading pauses as soon as any input is waiting (not before: a client that
  does not pipeline sends nothing until it has the reply, and pausing and resuming the
  socket around every reply would cost two system calls for nothing);
- MAIL/RCPT parameters are parsed and enforced (:mod:`rail.smtp.commands`);
- DATA: the message is collected once (not per recipient), its real size enforced, its
  buffer charged to the budget all sessions share (:mod:`rail.smtp.budget`), and a storage
  failure answers ``451 4.3.0`` instead of stock's ``550``;
- deadlines beyond the idle timeout: a command line must arrive whole within
  ``command_timeout`` of its first byte, a transaction within ``transaction_timeout``, and
  only ``idle_commands`` commands that move no mail (NOOP, RSET, VRFY, HELP, EHLO...) are
  taken between two delivered messages, so trickling bytes or NOOPs cannot hold a
  connection forever;
- shutdown (:meth:`RailESMTP.shutdown`): ``421 4.3.2`` between commands, and a running
  transaction is let finish first (RFC 5321 §3.8);
- every reply after the greeting and EHLO carries an enhanced status code (RFC 2034).

Decisions that differ by port live in a :class:`~rail.smtp.session.Session`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IPushProducer,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.mail import smtp
from twisted.python.failure import Failure
from zope.interface import implementer

from rail.policy.verdict import Reject
from rail.refusals import Refusals
from rail.smtp.budget import COPIES, DataBudget
from rail.smtp.commands import parse_helo, parse_mail, parse_rcpt
from rail.smtp.framing import LINE_TOO_LONG, LineFramer
from rail.smtp.session import Envelope, Reply, Session, reply_of

__all__ = ["RailESMTP", "SMTPLimits"]

_log = Logger()

_HTTP_VERBS = frozenset({b"GET", b"POST", b"HEAD", b"PUT", b"CONNECT", b"OPTIONS", b"DELETE"})

_OK = Reply(250, "2.0.0", "Ok")
_SEND_HELO = Reply(503, "5.5.1", "Send EHLO or HELO first")
_NEED_MAIL = Reply(503, "5.5.1", "Send MAIL first")
_NEED_RCPT = Reply(503, "5.5.1", "Send RCPT first")
_NESTED_MAIL = Reply(503, "5.5.1", "Nested MAIL command")
_NO_ARGS = Reply(501, "5.5.4", "No parameters allowed")
_UNKNOWN = Reply(500, "5.5.1", "Command unrecognized")
_NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")
_TOO_MANY_RCPTS = Reply(452, "4.5.3", "Too many recipients")
_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
_LOCAL_ERROR = Reply(451, "4.3.0", "Requested action aborted: local error in processing")
_TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors; closing connection")
_HTTP = Reply(500, "5.5.1", "This is an SMTP server, not HTTP; closing connection")
_IDLE = Reply(421, "4.4.2", "Idle timeout; closing connection")
_SLOW = Reply(421, "4.4.2", "Transaction took too long; closing connection")
_SLOW_COMMAND = Reply(421, "4.4.2", "Command line took too long; closing connection")
_TOO_MANY_IDLE = Reply(421, "4.7.0", "Too many commands without mail; closing connection")
# RFC 3463 X.3.4 is "message too big for system"; X.3.1 "mail system full" is the one for
# a resource shortage that passes (as the queue's own 452 4.3.1 does).
_NO_MEMORY = Reply(452, "4.3.1", "Insufficient system storage; try again later")
# RFC 3463 X.3.2: "system not accepting network messages", e.g. an imminent shutdown.
_SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down; closing connection")
# In DATA an over-long line is a fault of the content, not of the conversation: RFC 5322
# §2.1.1 limits message lines to 998 characters, and the sender must encode longer ones
# (quoted-printable, base64). RFC 3463 X.6.0 ("something about the content of a message
# caused it to be considered undeliverable") says so; X.5.2 (syntax) is for commands.
_TEXT_LINE_TOO_LONG = Reply(500, "5.6.0", "Message line too long; encode lines over 998 octets")
_DATA_GO = Reply(354, "", "End data with <CR><LF>.<CR><LF>")
_TLS_GO = Reply(220, "2.0.0", "Ready to start TLS")
_TLS_ALREADY = Reply(503, "5.5.1", "TLS already active")
_BYE = Reply(221, "2.0.0", "Bye")

_RCPT_OK = Reply(250, "2.1.5", "Recipient ok")

_Result = Reply | defer.Deferred[Reply] | None


def _contains(recipients: tuple[str, ...], address: str) -> bool:
    """Mailbox equality as delivery sees it: local part exact, domain in any case."""
    local, _, domain = address.rpartition("@")
    domain = domain.lower()
    for other in recipients:
        other_local, _, other_domain = other.rpartition("@")
        if other_local == local and other_domain.lower() == domain:
            return True
    return False


@attrs.frozen(kw_only=True)
class SMTPLimits:
    """Per-session bounds (``limits.*`` in the configuration)."""

    message_size: int
    max_recipients: int
    idle_timeout: float
    transaction_timeout: float
    bad_commands: int
    command_timeout: float = 30.0
    idle_commands: int = 100


# Commands that move no mail. Each is harmless; an endless stream of them is a client
# holding a connection for nothing (Postfix's smtpd_junk_command_limit counts the same).
_IDLE_VERBS = frozenset({b"NOOP", b"RSET", b"VRFY", b"EXPN", b"HELP", b"EHLO", b"HELO"})


# Verb → handler method name (looked up per command, so subclasses can override them;
# a table of bound methods built per connection cost more than the rest of __init__).
_COMMANDS: dict[bytes, str] = {
    b"EHLO": "_ehlo",
    b"HELO": "_helo_command",
    b"MAIL": "_mail",
    b"RCPT": "_rcpt",
    b"DATA": "_data_command",
    b"RSET": "_rset",
    b"NOOP": "_noop",
    b"VRFY": "_vrfy",
    b"EXPN": "_expn",
    b"HELP": "_help",
    b"QUIT": "_quit",
    b"STARTTLS": "_starttls",
}


@implementer(IHandshakeListener, IPushProducer)
class RailESMTP(smtp.ESMTP):
    """One SMTP session; see the module docstring for what differs from stock ESMTP."""

    noisy = False

    def __init__(
        self,
        session: Session,
        *,
        hostname: str,
        limits: SMTPLimits,
        clock: IReactorTime,
        starttls: Any = None,
        budget: DataBudget | None = None,
        refusals: Refusals | None = None,
        listener: str = "smtp",
    ) -> None:
        super().__init__(contextFactory=starttls)
        self.host = hostname.encode("ascii")
        self._hostname = hostname
        self._session = session
        self._limits = limits
        self._clock = clock
        # TimeoutMixin would use the global reactor.
        self.callLater = clock.callLater  # type: ignore[method-assign,assignment]
        self.timeout = limits.idle_timeout  # type: ignore[assignment]
        self._framer = LineFramer()
        self._pending: deque[bytes | Reject] = deque()
        self._busy = False
        self._write_blocked = False
        self._reading_paused = False
        self._draining = False
        self._closing = False
        self._errors = 0
        self._helo_name: str | None = None
        self._esmtp = False
        self._envelope: Envelope | None = None
        self._data: bytearray | None = None
        # Set once the message cannot be kept (too big, no memory): the rest of DATA is
        # read and dropped, and this is the reply at its end.
        self._discard: Reply | None = None
        self._budget = budget
        self._reserved = 0  # bytes of the budget this session's buffer holds
        self._refusals = refusals
        self._listener = listener
        self._idle_commands = 0
        # When the command line now arriving began (None: no partial command line).
        self._line_started: float | None = None
        self._line_timer: IDelayedCall | None = None
        self._shutting_down = False
        self._transaction_timer: IDelayedCall | None = None
        self._tls = False

    @property
    def _io(self) -> Any:
        """The transport, typed loosely: TLS and TCP transports add producer and
        startTLS methods that ITransport does not declare."""
        return self.transport

    # Connection and TLS

    def connectionMade(self) -> None:
        # As a producer, the transport tells us when the peer stops reading our replies;
        # without that, a client pipelining NOOPs it never reads makes Rail buffer replies
        # without bound.
        self._io.registerProducer(self, True)
        super().connectionMade()

    def pauseProducing(self) -> None:
        self._write_blocked = True
        self._update_reading()

    def resumeProducing(self) -> None:
        self._write_blocked = False
        self._update_reading()
        self._drain()

    def stopProducing(self) -> None:
        self._closing = True

    def _update_reading(self) -> None:
        """Stop reading from the peer while input waits behind a pending reply or behind
        replies the peer does not read.

        Nothing is read ahead of the reply either way beyond what one read brought (the
        framer holds at most one partial line). A blocked write with nothing waiting
        does not pause: TLS also blocks writes during its handshake (the greeting
        waits), and the handshake needs reads.
        """
        waiting = bool(self._pending) or self._framer.buffered > 0
        pause = (self._busy or self._write_blocked) and waiting and not self._closing
        if pause and not self._reading_paused:
            self._reading_paused = True
            self._io.pauseProducing()
        elif not pause and self._reading_paused:
            self._reading_paused = False
            self._io.resumeProducing()

    def greeting(self) -> bytes:
        return self.host + b" ESMTP Rail"

    def handshakeCompleted(self) -> None:
        self._tls = True
        self._session.handshake_completed(self.transport)

    def connectionLost(self, reason: Failure = smtp.protocol.connectionDone) -> None:
        self._closing = True
        self._pending.clear()
        self._data = None
        self._release_budget()
        self._cancel_transaction_timer()
        self._cancel_line_timer()
        self.setTimeout(None)

    def timeoutConnection(self) -> None:
        if self._busy:
            # Rail is the slow side (storage): the client is waiting on us, not idle.
            self.resetTimeout()
            return
        self._refuse("smtp_idle_timeout")
        self._close_with(_IDLE)

    def shutdown(self) -> None:
        """Rail is stopping (called by :meth:`rail.listener.TrackingFactory.close_all`).

        Between commands the client gets ``421 4.3.2`` and the connection closes (RFC 5321
        §3.8). A transaction under way (after MAIL, in DATA, or waiting for its reply) is
        let finish, and the 421 follows its reply; the listener aborts whatever is still
        open when ``shutdown.grace_period`` ends.
        """
        if self._closing:
            return
        self._shutting_down = True
        self._drain()

    # Input: framing, then one line at a time

    def dataReceived(self, data: bytes) -> None:
        if self._closing:
            return
        self.resetTimeout()
        framer = self._framer
        was_partial = framer.buffered > 0
        lines, error = framer.feed(data)
        self._pending.extend(lines)
        if error is not None:
            self._pending.append(error)
        self._drain()
        self._update_reading()
        if self._closing:
            return
        if not self._framer.buffered or self._data is not None:
            # No partial line, or a line of message text (the transaction timer bounds DATA).
            self._line_started = None
        elif lines or not was_partial or self._line_started is None:
            self._start_line_deadline()

    # Command-line deadline: checked lazily, one timer per session at most, rather than a
    # timer set and cancelled for every line.

    def _start_line_deadline(self) -> None:
        self._line_started = self._clock.seconds()
        if self._line_timer is None:
            self._line_timer = self._clock.callLater(
                self._limits.command_timeout, self._line_deadline
            )

    def _line_deadline(self) -> None:
        self._line_timer = None
        started = self._line_started
        if started is None or self._closing or self._data is not None:
            return
        if not self._framer.buffered:  # STARTTLS replaced the framer and its partial line
            self._line_started = None
            return
        now = self._clock.seconds()
        if self._busy or self._reading_paused:
            # Rail is not reading: the client cannot finish the line; start again later.
            started = self._line_started = now
        due = started + self._limits.command_timeout
        if now < due:
            self._line_timer = self._clock.callLater(due - now, self._line_deadline)
            return
        self._refuse("smtp_command_timeout")
        self._close_with(_SLOW_COMMAND)

    def _cancel_line_timer(self) -> None:
        if self._line_timer is not None and self._line_timer.active():
            self._line_timer.cancel()
        self._line_timer = None

    def _drain(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while not self._closing:
                if self._shutting_down and not self._in_transaction():
                    self._close_with(_SHUTTING_DOWN)
                    return
                if not self._pending or self._busy or self._write_blocked:
                    return
                if self._data is not None and self._take_data_lines():
                    continue
                item = self._pending.popleft()
                if isinstance(item, Reject):
                    self._close_with(self._framing_reply(item))
                    return
                try:
                    result = self._line(item)
                except Exception:
                    _log.failure("SMTP command failed", peer=self._peer())
                    self._close_with(_LOCAL_ERROR)
                    return
                if result is None:
                    continue
                if isinstance(result, Reply):
                    self._answer(result)
                    continue
                self._wait_for(result)
        finally:
            self._draining = False

    def _wait_for(self, result: defer.Deferred[Reply]) -> None:
        self._busy = True
        result.addErrback(self._internal_error)
        result.addCallback(self._answered)  # at once if it has fired
        if self._busy:
            self._update_reading()

    def _answered(self, reply: Reply) -> None:
        self._busy = False
        if self._closing:
            return
        self._answer(reply)
        if not self._closing:
            self._update_reading()
            self._drain()

    def _ask(
        self, question: Callable[..., Any], answered: Callable[..., Reply], *args: Any
    ) -> _Result:
        """``answered(question(*args), *args)``: at once when the session answers at once
        (no Deferred, no pause), later when it returns a Deferred. An exception is a
        bug, answered ``451 4.3.0`` as a failed Deferred would be."""
        try:
            verdict = question(*args)
            if isinstance(verdict, defer.Deferred):
                return verdict.addCallback(answered, *args)
            return answered(verdict, *args)
        except Exception:
            return self._internal_error(Failure())  # type: ignore[no-untyped-call, unused-ignore]

    def _internal_error(self, failure: Failure) -> Reply:
        _log.failure("SMTP session error", failure, peer=self._peer())
        return _LOCAL_ERROR

    def _framing_reply(self, fault: Reject) -> Reply:
        if fault is LINE_TOO_LONG:
            self._refuse("line_length")
            if self._data is not None:
                return _TEXT_LINE_TOO_LONG
        return reply_of(fault)

    def _in_transaction(self) -> bool:
        """Whether a mail transaction is under way: after MAIL, in DATA, or waiting for a
        reply (a running check or the storage of a message)."""
        return self._envelope is not None or self._data is not None or self._busy

    def _line(self, line: bytes) -> _Result:
        if self._data is not None:
            return self._data_line(line)
        verb, _, arg = line.partition(b" ")
        verb = verb.upper()
        handler = _COMMANDS.get(verb)
        if handler is None:
            if verb in _HTTP_VERBS:
                self._close_with(_HTTP)
                return None
            return _UNKNOWN
        if verb in _IDLE_VERBS:
            self._idle_commands += 1
            if self._idle_commands > self._limits.idle_commands:
                self._refuse("smtp_idle_commands")
                self._close_with(_TOO_MANY_IDLE)
                return None
        method: Callable[[bytes], _Result] = getattr(self, handler)
        return method(arg)

    def _refuse(self, reason: str) -> None:
        """Count and log (rate-limited) a refusal by one of the bounds."""
        if self._refusals is not None:
            self._refusals.refuse(self._listener, reason, self._peer())

    # Output

    def _answer(self, reply: Reply) -> None:
        self._send(reply)
        if reply.failed and reply.code not in (421, 452):
            self._errors += 1
            if self._errors >= self._limits.bad_commands:
                self._refuse("smtp_bad_commands")
                self._close_with(_TOO_MANY_ERRORS)

    def _send(self, reply: Reply) -> None:
        enhanced = f"{reply.enhanced} " if reply.enhanced else ""
        self._io.write(f"{reply.code} {enhanced}{reply.text}\r\n".encode())

    def _close_with(self, reply: Reply) -> None:
        if self._closing:
            return
        self._send(reply)
        self._closing = True
        self._pending.clear()
        self._data = None
        self._release_budget()
        self._cancel_transaction_timer()
        self._cancel_line_timer()
        # TLS only closes once no producer is registered: unregister or the socket stays.
        self._io.unregisterProducer()
        self._io.loseConnection()

    # Transactions

    def _reset_transaction(self) -> None:
        self._envelope = None
        self._data = None
        self._release_budget()
        self._cancel_transaction_timer()

    def _release_budget(self) -> None:
        reserved, self._reserved = self._reserved, 0
        if reserved and self._budget is not None:
            self._budget.release(reserved)

    def _reserve(self, size: int) -> bool:
        """Grow this session's share of the budget to what a message of ``size`` bytes
        costs (:data:`rail.smtp.budget.COPIES`); whether it could."""
        budget = self._budget
        cost = size * COPIES
        if budget is None or cost <= self._reserved:
            return True
        if not budget.reserve(cost - self._reserved):
            return False
        self._reserved = cost
        return True

    def _cancel_transaction_timer(self) -> None:
        if self._transaction_timer is not None and self._transaction_timer.active():
            self._transaction_timer.cancel()
        self._transaction_timer = None

    def _transaction_timed_out(self) -> None:
        self._transaction_timer = None
        self._refuse("smtp_transaction_timeout")
        self._close_with(_SLOW)

    def _peer(self) -> str:
        peer = self._io.getPeer() if self.transport is not None else None
        return str(getattr(peer, "host", peer))

    # Commands

    def _greet(self, arg: bytes, esmtp: bool) -> _Result:
        name = parse_helo(arg)
        if isinstance(name, Reject):
            return reply_of(name)
        self._reset_transaction()
        self._helo_name = name
        self._esmtp = esmtp
        if not esmtp:
            return Reply(250, "", f"{self._hostname} Hello {name}")
        lines = [f"{self._hostname} Hello {name}", *self._extensions()]
        text = "".join(f"250-{line}\r\n" for line in lines[:-1]) + f"250 {lines[-1]}\r\n"
        self._io.write(text.encode("ascii"))
        return None

    def _extensions(self) -> list[str]:
        extensions = [
            "PIPELINING",
            f"SIZE {self._limits.message_size}",
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            "SMTPUTF8",
        ]
        if self.ctx is not None and self.canStartTLS and not self._tls:
            extensions.append("STARTTLS")
        return extensions

    def _ehlo(self, arg: bytes) -> _Result:
        return self._greet(arg, esmtp=True)

    def _helo_command(self, arg: bytes) -> _Result:
        return self._greet(arg, esmtp=False)

    def _mail(self, arg: bytes) -> _Result:
        if self._helo_name is None:
            return _SEND_HELO
        if self._envelope is not None:
            return _NESTED_MAIL
        command = parse_mail(arg, esmtp=self._esmtp, max_size=self._limits.message_size)
        if isinstance(command, Reject):
            return reply_of(command)
        envelope = Envelope(
            helo=self._helo_name,
            peer=self._peer(),
            sender=command.sender,
            declared_size=command.size,
            eight_bit=command.eight_bit,
            smtputf8=command.smtputf8,
            tls=self._tls,
        )
        return self._ask(self._session.check_mail, self._mail_checked, envelope)

    def _mail_checked(self, verdict: Reject | None, envelope: Envelope) -> Reply:
        if verdict is not None:
            return reply_of(verdict)
        if self._closing:
            return _LOCAL_ERROR  # not sent: the connection is gone; arm no timer
        self._envelope = envelope
        self._transaction_timer = self._clock.callLater(
            self._limits.transaction_timeout, self._transaction_timed_out
        )
        return Reply(250, "2.1.0", "Sender ok")

    def _rcpt(self, arg: bytes) -> _Result:
        envelope = self._envelope
        if envelope is None:
            return _NEED_MAIL
        command = parse_rcpt(arg, smtputf8=envelope.smtputf8, hostname=self._hostname)
        if isinstance(command, Reject):
            return reply_of(command)
        if _contains(envelope.recipients, command.recipient):
            # Twice the same mailbox is one delivery (and does not use up the limit).
            return _RCPT_OK
        if len(envelope.recipients) >= self._limits.max_recipients:
            return _TOO_MANY_RCPTS
        return self._ask(self._session.check_rcpt, self._rcpt_checked, envelope, command.recipient)

    def _rcpt_checked(self, verdict: Reject | None, envelope: Envelope, recipient: str) -> Reply:
        if verdict is not None:
            return reply_of(verdict)
        if self._envelope is envelope:
            self._envelope = attrs.evolve(envelope, recipients=(*envelope.recipients, recipient))
        return _RCPT_OK

    def _data_command(self, arg: bytes) -> _Result:
        if arg.strip():
            return _NO_ARGS
        if self._envelope is None:
            return _NEED_MAIL
        if not self._envelope.recipients:
            return _NEED_RCPT
        # A message that cannot fit now (its declared SIZE, or any when nothing is left)
        # is refused before the client sends it. Nothing is reserved until bytes arrive:
        # declaring a SIZE costs nothing, so it must not be able to hold memory.
        budget = self._budget
        if (
            budget is not None
            and budget.available < max(self._envelope.declared_size or 0, 1) * COPIES
        ):
            self._refuse("data_memory")
            return _NO_MEMORY
        self._data = bytearray()
        self._discard = None
        return _DATA_GO

    def _take_data_lines(self) -> bool:
        """In DATA, take the run of waiting lines that need no decision (no leading dot)
        into the message at once rather than one command dispatch per line; whether
        there was any."""
        pending = self._pending
        run: list[bytes] = []
        while pending:
            line = pending[0]
            if isinstance(line, Reject) or line[:1] == b".":
                break
            run.append(line)
            pending.popleft()
        if run:
            self._append_data(run)
        return bool(run)

    def _data_line(self, line: bytes) -> _Result:
        if line[:1] == b".":
            if line == b".":
                return self._end_of_data()
            line = line[1:]
        self._append_data([line])
        return None

    def _append_data(self, lines: list[bytes]) -> None:
        if self._discard is not None:
            return
        data = self._data
        assert data is not None
        size = len(data) + sum(map(len, lines)) + 2 * len(lines)
        if size > self._limits.message_size:
            self._refuse("message_size")
            self._stop_keeping(_TOO_BIG)
            return
        if size * COPIES > self._reserved and not self._reserve(size):
            self._refuse("data_memory")
            self._stop_keeping(_NO_MEMORY)
            return
        # One buffer, not a list of lines: a list costs ten times the message in objects.
        data += b"\r\n".join(lines)
        data += b"\r\n"

    def _stop_keeping(self, reply: Reply) -> None:
        """Keep reading to the end (the client cannot be stopped mid-DATA) but keep
        nothing, and give the memory back at once; ``reply`` answers the end of DATA."""
        self._discard = reply
        self._data = bytearray()
        self._release_budget()

    def _end_of_data(self) -> _Result:
        envelope, buffered, discard = self._envelope, self._data, self._discard
        # The budget stays charged until the session has answered: the message is in
        # memory (and copied) while it is checked and stored.
        held, self._reserved = self._reserved, 0
        self._data = None
        self._reset_transaction()
        if discard is not None:
            self._give_back(None, held)
            return discard
        assert envelope is not None and buffered is not None
        data = bytes(buffered)
        del buffered  # one copy of the message, not two, while it is delivered
        result = defer.maybeDeferred(self._session.deliver, envelope, data)
        return result.addBoth(self._give_back, held).addCallback(self._delivered)

    def _give_back(self, result: Any, held: int) -> Any:
        if held and self._budget is not None:
            self._budget.release(held)
        return result

    def _delivered(self, verdict: Reject | Reply) -> Reply:
        reply = reply_of(verdict)
        if not reply.failed:
            # A client that delivers mail may go on: the idle-command count starts again
            # (as Postfix resets its junk-command count).
            self._idle_commands = 0
        return reply

    def _rset(self, arg: bytes) -> _Result:
        if arg.strip():
            return _NO_ARGS
        self._reset_transaction()
        return _OK

    def _noop(self, arg: bytes) -> _Result:
        return _OK

    def _vrfy(self, arg: bytes) -> _Result:
        if not arg.strip():
            return Reply(501, "5.5.4", "VRFY requires an address")
        return Reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery")

    def _expn(self, arg: bytes) -> _Result:
        return _NOT_IMPLEMENTED

    def _help(self, arg: bytes) -> _Result:
        return Reply(214, "2.0.0", "See RFC 5321")

    def _quit(self, arg: bytes) -> _Result:
        self._close_with(_BYE)
        return None

    def _starttls(self, arg: bytes) -> _Result:
        if self._tls:
            return _TLS_ALREADY
        if self.ctx is None or not self.canStartTLS:
            return _NOT_IMPLEMENTED
        if arg.strip():
            return _NO_ARGS
        # RFC 3207 §4.2: forget everything learnt before TLS, and anything the client
        # pipelined after STARTTLS (it would run inside TLS as if sent there: injection).
        self._send(_TLS_GO)
        self._pending.clear()
        self._framer = LineFramer()
        self._reset_transaction()
        self._helo_name = None
        self._esmtp = False
        self._io.startTLS(self.ctx)
        self.startedTLS = True
        return None
