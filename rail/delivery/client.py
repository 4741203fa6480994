"""Rail's outbound SMTP client: one connection to one remote server, many transactions.

Twisted's ``ESMTPSender`` is not used: it rewrites the stored CRLF bytes, misses
dot-stuffing at chunk boundaries (see :mod:`rail.delivery.dotstuff`), sends no
PIPELINING or MAIL parameters, reports one error for a whole transaction and runs its
own retries. This protocol sends the stored bytes exactly, pipelines MAIL, RCPT and DATA
in one write when the server offers PIPELINING (RFC 2920), reports a reply per
recipient, and leaves retrying to Rail's queue.

What a transaction decides comes back as a value: a refused sender or recipient is a
:class:`~rail.delivery.outcome.MessageResult`, not an error. Only a session that breaks
(timeout, lost connection, garbage, failed TLS) errbacks, with a
:class:`~rail.delivery.outcome.SessionError`. Every wait is bounded by the RFC 5321
§4.5.3.2 timeouts on the injected clock, and nothing stays scheduled once the
connection is gone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IPushProducer,
    IReactorTime,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from rail.delivery.dotstuff import dot_stuff
from rail.delivery.outcome import (
    MessageResult,
    OutboundMessage,
    RecipientResult,
    Reply,
    SessionError,
)
from rail.delivery.replies import (
    Capabilities,
    ReplyReader,
    Response,
    accepted,
    local_refusal,
    mail_command,
    parse_capabilities,
    recipient_results,
)

__all__ = ["CHUNK", "ClientTimeouts", "SMTPClientProtocol"]

CHUNK = 64 * 1024
"""Body bytes per write when a large message is sent with backpressure."""


def _local(code: int, enhanced: str, text: str) -> Reply:
    return Reply(code, enhanced, text[:300], remote=False)


@attrs.frozen(kw_only=True)
class ClientTimeouts:
    """Seconds to wait for each reply; the defaults are RFC 5321 §4.5.3.2's minimums.

    ``data_block`` bounds each stretch of a large body during which the server reads
    nothing; ``other`` covers EHLO/HELO, STARTTLS, RSET and QUIT.
    """

    greeting: float = 300.0
    mail: float = 300.0
    rcpt: float = 300.0
    data_init: float = 120.0
    data_block: float = 180.0
    data_end: float = 600.0
    other: float = 300.0


@attrs.define
class _Transaction:
    """One message's replies as they come in."""

    message: OutboundMessage
    result: Deferred[MessageResult]
    pipelined: bool
    mail: Reply | None = None
    rcpts: list[Reply] = attrs.Factory(list)
    data: Reply | None = None
    final: Reply | None = None
    dot_sent: bool = False

    def results(self) -> MessageResult:
        return recipient_results(
            self.message.recipients, self.mail, self.rcpts, self.data, self.final
        )


@implementer(IPushProducer)
class _BodySender:
    """Writes a large DATA stream a chunk at a time while the transport asks for more,
    so a slow reader does not make the transport buffer a second copy of the message,
    and each chunk it takes restarts the data-block timer."""

    def __init__(
        self, transport: Any, stream: bytes, progress: Callable[[], None], done: Callable[[], None]
    ) -> None:
        self._transport = transport
        self._stream = stream
        self._offset = 0
        self._progress = progress
        self._done = done
        self._paused = False
        self._stopped = False
        self._pumping = False

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self.pump()

    def stopProducing(self) -> None:
        self._stopped = True

    def pump(self) -> None:
        if self._pumping or self._stopped:
            return
        self._pumping = True
        try:
            stream, size = self._stream, len(self._stream)
            while not self._paused and not self._stopped and self._offset < size:
                start = self._offset
                self._offset = start + CHUNK
                self._transport.write(stream[start : self._offset])
        finally:
            self._pumping = False
        if self._stopped:
            return
        self._progress()
        if self._offset >= len(self._stream):
            self._stopped = True
            self._transport.unregisterProducer()
            self._done()


_Handler = Callable[[Response], None]


@implementer(IHandshakeListener)
class SMTPClientProtocol(Protocol):
    """One SMTP client session; see the module docstring.

    ``ready`` fires with the protocol once it may send: after the greeting, EHLO (HELO
    if EHLO is refused with 5xx) and, when the server offers STARTTLS and ``tls`` is
    given, the TLS handshake and a second EHLO. With ``require_tls`` a server without
    working STARTTLS is a :class:`SessionError` (``451 4.7.4``). ``tls`` is a client
    connection creator or context factory for ``startTLS``; None never starts TLS.
    """

    def __init__(
        self,
        helo_name: str,
        clock: IReactorTime,
        tls: Any,
        timeouts: ClientTimeouts,
        require_tls: bool = False,
    ) -> None:
        if not helo_name.isascii() or not helo_name.isprintable() or " " in helo_name:
            raise ValueError(f"unusable HELO name {helo_name!r}")
        if require_tls and tls is None:
            raise ValueError("require_tls needs a TLS connection creator")
        self._helo = helo_name.encode("ascii")
        self._clock = clock
        self._tls = tls
        self._timeouts = timeouts
        self._require_tls = require_tls
        self.ready: Deferred[SMTPClientProtocol] = Deferred(self._cancel_ready)
        self.capabilities = Capabilities()
        self.tls_active = False
        self.tls_version: str | None = None
        """The negotiated protocol (``"TLSv1.3"``) once TLS is active (for the log)."""
        self.messages_sent = 0
        """Transactions started on this connection (for bounding reuse)."""
        self.closed = False
        self._ready_done = False
        self._tls_tried = False
        self._negotiating_tls = False
        self._quitting = False
        self._needs_rset = False
        self._reader = ReplyReader()
        self._waiting: deque[tuple[str, float, _Handler]] = deque()
        self._timer: IDelayedCall | None = None
        self._error: SessionError | None = None
        self._transaction: _Transaction | None = None
        self._body: _BodySender | None = None
        self._closers: list[Deferred[None]] = []
        self._commands: list[Deferred[Response]] = []

    @property
    def _io(self) -> Any:
        """The transport, typed loosely: TCP and TLS transports add ``startTLS``,
        ``abortConnection`` and producer methods that ITransport does not declare."""
        return self.transport

    # Public API

    def send(self, message: OutboundMessage) -> Deferred[MessageResult]:
        """Offer ``message`` in one transaction; fires with a reply per recipient."""
        if self._transaction is not None:
            raise RuntimeError("a transaction is already in progress")
        if not self._ready_done:
            raise RuntimeError("send() before the session is ready")
        if self._error is not None or self.closed or self._quitting:
            return fail(self._error or SessionError(_local(451, "4.4.2", "connection closed")))
        refusal = local_refusal(message, self.capabilities)
        if refusal is not None:
            refused = tuple(RecipientResult(r, refusal) for r in message.recipients)
            return succeed(MessageResult(refused))
        if not message.recipients:
            return succeed(MessageResult(()))
        pipelined = "PIPELINING" in self.capabilities
        transaction = _Transaction(message, Deferred(self._cancel_transaction), pipelined)
        self._transaction = transaction
        self.messages_sent += 1
        mail = mail_command(message, self.capabilities)
        if not pipelined:
            if self._needs_rset:
                self._command(b"RSET\r\n", "RSET", self._timeouts.other, self._rset_replied)
            else:
                self._command(mail, "MAIL", self._timeouts.mail, self._mail_replied)
            return transaction.result
        group = [mail]
        if self._needs_rset:
            group.insert(0, b"RSET\r\n")
            self._expect("RSET", self._timeouts.other, self._rset_replied)
        self._expect("MAIL", self._timeouts.mail, self._mail_replied)
        for recipient in message.recipients:
            group.append(f"RCPT TO:<{recipient}>\r\n".encode())
            self._expect("RCPT", self._timeouts.rcpt, self._rcpt_replied)
        group.append(b"DATA\r\n")
        self._expect("DATA", self._timeouts.data_init, self._data_replied)
        self._needs_rset = False
        self._io.write(b"".join(group))
        return transaction.result

    def command(self, line: bytes, what: str) -> Deferred[Response]:
        """Send one command line between transactions (AUTH, after ``ready``) and fire
        with its reply, whatever its code; a broken session errbacks as ``send`` does.
        ``what`` names the command in timeout texts; ``line`` itself is never logged."""
        if self._transaction is not None:
            raise RuntimeError("a transaction is in progress")
        if not self._ready_done:
            raise RuntimeError("command() before the session is ready")
        if self._error is not None or self.closed or self._quitting:
            return fail(self._error or SessionError(_local(451, "4.4.2", "connection closed")))
        answered: Deferred[Response] = Deferred()
        self._commands.append(answered)

        def replied(response: Response) -> None:
            self._commands.remove(answered)
            answered.callback(response)

        self._command(line, what, self._timeouts.other, replied)
        return answered

    def quit(self) -> Deferred[None]:
        """Say QUIT and close; fires once the connection is gone, even if the server
        never answers (bounded by ``timeouts.other``)."""
        if self._transaction is not None:
            raise RuntimeError("quit() during a transaction; use abort()")
        closed = self.when_closed()
        if self.closed or self._quitting:
            return closed
        self._quitting = True
        if not self._ready_done or self._error is not None:
            self.abort()
        else:
            self._command(b"QUIT\r\n", "QUIT", self._timeouts.other, self._quit_replied)
        return closed

    def abort(self) -> None:
        """Drop the connection now; anything pending fails with a SessionError."""
        self._abort_with(SessionError(_local(451, "4.4.2", "connection aborted by Rail")))

    def when_closed(self) -> Deferred[None]:
        """A Deferred that fires once the connection is gone."""
        if self.closed:
            return succeed(None)
        closed: Deferred[None] = Deferred()
        self._closers.append(closed)
        return closed

    # Twisted callbacks

    def connectionMade(self) -> None:
        self._expect("the greeting", self._timeouts.greeting, self._greeted)

    def handshakeCompleted(self) -> None:
        self.tls_active = True
        try:
            self.tls_version = self._io.getHandle().get_protocol_version_name()
        except Exception:  # a transport without an OpenSSL connection: version unknown
            self.tls_version = None

    def dataReceived(self, data: bytes) -> None:
        if self._error is not None:
            return
        reader = self._reader
        responses, error = reader.feed(data)
        for response in responses:
            if self._reader is not reader or self._error is not None:
                break
            self._dispatch(response)
        if self._reader is not reader:
            # After STARTTLS whatever else the server sent in plaintext is dropped (RFC
            # 3207 §4.2): it would otherwise pass for a reply inside TLS.
            return
        if error is not None and self._error is None:
            self._protocol_error(str(error))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        self._disarm()
        if self._negotiating_tls:
            text = f"TLS negotiation failed: {reason.getErrorMessage()}"
            error = SessionError(_local(451, "4.7.5", text), tls_failed=True)
        else:
            where = self._waiting[0][0] if self._waiting else "the server"
            error = SessionError(
                _local(451, "4.4.2", f"connection lost waiting for {where}"),
                after_data=self._after_data(),
            )
        self._fail(error)
        closers, self._closers = self._closers, []
        for closed in closers:
            closed.callback(None)

    # Replies and timers

    def _dispatch(self, response: Response) -> None:
        if not self._waiting:
            if response.code >= 400:
                self._abort_with(SessionError(response.reply()))
            else:
                self._protocol_error(f"unexpected reply {response.reply()}")
            return
        _, _, handler = self._waiting.popleft()
        if self._waiting:
            self._arm(self._waiting[0][1])
        else:
            self._disarm()
        if response.code == 421 and handler != self._final_replied:
            # The server is closing the session (RFC 5321 §3.8).
            self._abort_with(SessionError(response.reply()))
            return
        handler(response)

    def _command(self, line: bytes, what: str, timeout: float, handler: _Handler) -> None:
        self._expect(what, timeout, handler)
        self._io.write(line)

    def _expect(self, what: str, timeout: float, handler: _Handler) -> None:
        self._waiting.append((what, timeout, handler))
        if len(self._waiting) == 1:
            self._arm(timeout)

    def _arm(self, seconds: float) -> None:
        timer = self._timer
        if timer is not None and timer.active():
            timer.reset(seconds)
        else:
            self._timer = self._clock.callLater(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self._body is not None:
            what = "the server to read the message"
        else:
            what = self._waiting[0][0] if self._waiting else "the server"
        error = SessionError(
            _local(451, "4.4.2", f"timed out waiting for {what}"),
            tls_failed=self._negotiating_tls,
            after_data=self._after_data(),
        )
        self._abort_with(error)

    # Failure

    def _after_data(self) -> bool:
        return self._transaction is not None and self._transaction.dot_sent

    def _protocol_error(self, text: str) -> None:
        reply = _local(451, "4.5.0", f"protocol error: {text}")
        self._abort_with(SessionError(reply, after_data=self._after_data()))

    def _abort_with(self, error: SessionError) -> None:
        self._fail(error)
        if not self.closed and self.transport is not None:
            self._io.abortConnection()

    def _fail(self, error: SessionError) -> None:
        """Fail whatever waits (once); later sends fail with the same error."""
        if self._error is not None:
            return
        self._error = error
        self._waiting.clear()
        self._disarm()
        self._negotiating_tls = False
        if self._body is not None:
            self._body.stopProducing()
            self._body = None
        if not self._ready_done:
            self._ready_done = True
            self.ready.errback(error)
        transaction, self._transaction = self._transaction, None
        if transaction is not None:
            transaction.result.errback(error)
        commands, self._commands = self._commands, []
        for answered in commands:
            answered.errback(error)

    def _cancel_ready(self, ready: Deferred[SMTPClientProtocol]) -> None:
        self._ready_done = True  # Deferred.cancel errbacks it with CancelledError
        self.abort()

    def _cancel_transaction(self, result: Deferred[MessageResult]) -> None:
        self._transaction = None
        self.abort()

    # Session set-up

    def _greeted(self, response: Response) -> None:
        if response.code >= 400:
            self._abort_with(SessionError(response.reply()))
        elif response.code >= 300:
            self._protocol_error(f"unexpected greeting {response.reply()}")
        else:
            self._command(b"EHLO " + self._helo + b"\r\n", "EHLO", self._timeouts.other, self._ehlo)

    def _ehlo(self, response: Response) -> None:
        if response.code < 300:
            self.capabilities = parse_capabilities(response)
            self._negotiating_tls = False
            self._start_tls_or_ready()
        elif response.code >= 500:
            self._command(
                b"HELO " + self._helo + b"\r\n", "HELO", self._timeouts.other, self._helo_replied
            )
        else:
            self._refused_or_odd(response, "EHLO")

    def _helo_replied(self, response: Response) -> None:
        if response.code >= 300:
            self._refused_or_odd(response, "HELO")
            return
        self.capabilities = Capabilities(esmtp=False)
        self._negotiating_tls = False
        self._start_tls_or_ready()

    def _start_tls_or_ready(self) -> None:
        if self._tls is not None and not self._tls_tried and "STARTTLS" in self.capabilities:
            self._tls_tried = True
            self._command(b"STARTTLS\r\n", "STARTTLS", self._timeouts.other, self._starttls_replied)
        elif self._require_tls and not self.tls_active:
            self._refuse_plaintext("the server does not offer STARTTLS")
        else:
            self._ready_done = True
            self.ready.callback(self)

    def _starttls_replied(self, response: Response) -> None:
        if response.code == 220:
            # Forget everything learnt in plaintext (RFC 3207 §4.2).
            self._reader = ReplyReader()
            self.capabilities = Capabilities()
            self._negotiating_tls = True
            self._io.startTLS(self._tls)
            self._command(b"EHLO " + self._helo + b"\r\n", "EHLO", self._timeouts.other, self._ehlo)
        elif response.code < 400:
            self._protocol_error(f"unexpected reply to STARTTLS {response.reply()}")
        elif self._require_tls:
            self._refuse_plaintext(f"STARTTLS was refused: {response.reply()}")
        else:
            self._start_tls_or_ready()

    def _refuse_plaintext(self, why: str) -> None:
        error = SessionError(_local(451, "4.7.4", f"TLS is required, but {why}"))
        self._fail(error)
        self._io.write(b"QUIT\r\n")
        self._io.loseConnection()

    def _refused_or_odd(self, response: Response, what: str) -> None:
        if response.code >= 400:
            self._abort_with(SessionError(response.reply()))
        else:
            self._protocol_error(f"unexpected reply to {what} {response.reply()}")

    def _quit_replied(self, response: Response) -> None:
        self._io.loseConnection()

    # Transactions

    def _rset_replied(self, response: Response) -> None:
        if response.code >= 300:
            self._refused_or_odd(response, "RSET")
            return
        self._needs_rset = False
        transaction = self._transaction
        assert transaction is not None
        if not transaction.pipelined:
            mail = mail_command(transaction.message, self.capabilities)
            self._command(mail, "MAIL", self._timeouts.mail, self._mail_replied)

    def _mail_replied(self, response: Response) -> None:
        transaction = self._transaction
        assert transaction is not None
        if not self._reply_class_ok(response, "MAIL"):
            return
        transaction.mail = response.reply()
        if transaction.pipelined:
            return
        if response.code < 300:
            self._send_rcpt(transaction)
        else:
            self._finish(needs_rset=True)

    def _send_rcpt(self, transaction: _Transaction) -> None:
        recipient = transaction.message.recipients[len(transaction.rcpts)]
        line = f"RCPT TO:<{recipient}>\r\n".encode()
        self._command(line, "RCPT", self._timeouts.rcpt, self._rcpt_replied)

    def _rcpt_replied(self, response: Response) -> None:
        transaction = self._transaction
        assert transaction is not None
        if not self._reply_class_ok(response, "RCPT"):
            return
        transaction.rcpts.append(response.reply())
        if transaction.pipelined:
            return
        if len(transaction.rcpts) < len(transaction.message.recipients):
            self._send_rcpt(transaction)
        elif accepted(transaction.mail, transaction.rcpts):
            self._command(b"DATA\r\n", "DATA", self._timeouts.data_init, self._data_replied)
        else:
            self._finish(needs_rset=True)

    def _data_replied(self, response: Response) -> None:
        transaction = self._transaction
        assert transaction is not None
        if response.code == 354:
            if accepted(transaction.mail, transaction.rcpts):
                self._send_body(transaction)
            else:
                # Pipelined with nobody accepted, yet the server wants the message:
                # end it empty (RFC 2920 §3.1) and ignore the reply.
                self._command(b".\r\n", "end of data", self._timeouts.data_end, self._discard)
            return
        if response.code < 400:
            self._protocol_error(f"unexpected reply to DATA {response.reply()}")
            return
        transaction.data = response.reply()
        self._finish(needs_rset=True)

    def _send_body(self, transaction: _Transaction) -> None:
        stream = dot_stuff(transaction.message.data)
        self._expect("the reply to the end of data", self._timeouts.data_end, self._final_replied)
        if len(stream) <= CHUNK:
            self._io.write(stream)
            transaction.dot_sent = True
            return
        self._body = _BodySender(self._io, stream, self._body_progress, self._body_done)
        self._arm(self._timeouts.data_block)
        self._io.registerProducer(self._body, True)
        self._body.pump()

    def _body_progress(self) -> None:
        if self._body is not None:
            self._arm(self._timeouts.data_block)

    def _body_done(self) -> None:
        self._body = None
        if self._transaction is not None:
            self._transaction.dot_sent = True
        self._arm(self._timeouts.data_end)

    def _final_replied(self, response: Response) -> None:
        transaction = self._transaction
        assert transaction is not None
        if response.code < 400 and response.code // 100 != 2:
            self._protocol_error(f"unexpected reply to the end of data {response.reply()}")
            return
        transaction.final = response.reply()
        if self._body is None:
            self._finish(needs_rset=False)
            return
        # The server answered before the end of the message: the rest of the body would
        # be read as commands. Keep the answer, but end the session before reporting it.
        self._body.stopProducing()
        self._body = None
        self._io.unregisterProducer()
        self._transaction = None
        why = "the server replied before the end of the message"
        self._abort_with(SessionError(_local(451, "4.5.0", why)))
        transaction.result.callback(transaction.results())

    def _discard(self, response: Response) -> None:
        self._finish(needs_rset=True)

    def _reply_class_ok(self, response: Response, what: str) -> bool:
        if 300 <= response.code < 400:
            self._protocol_error(f"unexpected reply to {what} {response.reply()}")
            return False
        return True

    def _finish(self, *, needs_rset: bool) -> None:
        transaction, self._transaction = self._transaction, None
        assert transaction is not None
        self._needs_rset = needs_rset
        transaction.result.callback(transaction.results())
