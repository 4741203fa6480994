"""What a remote SMTP server says, and what it means for a transaction.

Replies (RFC 5321 §4.2) are parsed here, EHLO capabilities read, the MAIL command and
the local refusals chosen from those capabilities, and each recipient's fate taken from
the transaction's replies: all pure, so each rule is tested with plain values.

The remote server is not trusted. A reply line is bounded and so is the number of lines
in one reply, so a hostile server sending an endless line or endless ``250-`` lines
cannot make Rail's memory grow; malformed replies are errors, never guesses. Reply text
ends up in logs, the API and DSNs, so control characters are replaced and undecodable
octets shown as U+FFFD.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import attrs

from rail.delivery.outcome import MessageResult, OutboundMessage, RecipientResult, Reply

__all__ = [
    "MAX_REPLY_LINE",
    "MAX_REPLY_LINES",
    "Capabilities",
    "ReplyError",
    "ReplyReader",
    "Response",
    "accepted",
    "local_refusal",
    "mail_command",
    "parse_capabilities",
    "recipient_results",
]

MAX_REPLY_LINE = 4096
"""Octets in one reply line, CRLF excluded (RFC 5321 allows 512; some servers say more)."""

MAX_REPLY_LINES = 100
"""Lines in one reply (an EHLO reply has a few dozen at most)."""

_ENHANCED = re.compile(r"([245])\.\d{1,3}\.\d{1,3}(?= |$)")
_CONTROLS = {**{n: "?" for n in range(32)}, 9: " ", 127: "?"}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")

_BAD_ADDRESS = Reply(553, "5.1.3", "envelope address contains control characters", remote=False)
_NEED_SMTPUTF8 = Reply(
    553, "5.6.7", "the message needs SMTPUTF8, which the server does not offer", remote=False
)
_NO_OUTCOME = Reply(451, "4.4.2", "no reply from the server", remote=False)


class ReplyError(ValueError):
    """The server's output is not a valid SMTP reply (or is too large to be one)."""


@attrs.frozen
class Response:
    """One complete reply as sent: the code and the text of each line (after ``ddd-``)."""

    code: int
    lines: tuple[str, ...]

    def reply(self) -> Reply:
        """The reply as a :class:`Reply`: the enhanced status code (RFC 2034) taken from
        the first line when its class agrees with the reply code, and repeated on later
        lines, removed; the lines joined with spaces."""
        first = self.lines[0]
        match = _ENHANCED.match(first)
        if match is None or int(match.group(1)) != self.code // 100:
            return Reply(self.code, None, " ".join(line for line in self.lines if line))
        enhanced = match.group(0)
        prefix = enhanced + " "
        texts = [
            line[len(prefix) :] if line.startswith(prefix) else ("" if line == enhanced else line)
            for line in self.lines
        ]
        return Reply(self.code, enhanced, " ".join(text for text in texts if text))


class ReplyReader:
    """Splits the server's byte stream into :class:`Response` values.

    :meth:`feed` returns the replies completed so far and, at the first malformed or
    over-long one, the error; the replies before the error still count (a server may
    have sent a good reply and then garbage that is meant to be read by someone else,
    such as TLS after ``220`` to STARTTLS). After an error the reader returns nothing.
    Lines may end in CRLF or, leniently, a bare LF: a reply cannot smuggle anything.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._code = 0
        self._lines: list[str] = []
        self._failed = False

    def feed(self, data: bytes) -> tuple[list[Response], ReplyError | None]:
        if self._failed:
            return [], None
        buf = self._buffer + data if self._buffer else data
        responses: list[Response] = []
        start = 0
        find = buf.find
        try:
            while True:
                end = find(b"\n", start)
                if end < 0:
                    break
                stop = end - 1 if end > start and buf[end - 1] == 0x0D else end
                if stop - start > MAX_REPLY_LINE:
                    raise ReplyError("reply line too long")
                response = self._line(buf[start:stop])
                if response is not None:
                    responses.append(response)
                start = end + 1
            if len(buf) - start > MAX_REPLY_LINE + 1:
                raise ReplyError("reply line too long")
        except ReplyError as error:
            self._failed = True
            self._buffer = b""
            return responses, error
        self._buffer = buf[start:]
        return responses, None

    def _line(self, line: bytes) -> Response | None:
        digits, separator = line[:3], line[3:4]
        if not digits.isdigit() or separator not in (b" ", b"-", b""):
            raise ReplyError(f"malformed reply line {_show(line)}")
        code = int(digits)
        if not 200 <= code <= 599:
            raise ReplyError(f"reply code {code} out of range")
        if self._lines and code != self._code:
            raise ReplyError(f"reply code changed from {self._code} to {code} within a reply")
        if len(self._lines) >= MAX_REPLY_LINES:
            raise ReplyError("too many reply lines")
        self._code = code
        self._lines.append(_text(line[4:]))
        if separator == b"-":
            return None
        lines, self._lines = tuple(self._lines), []
        return Response(code, lines)


def _text(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    if not text.isprintable():
        text = text.translate(_CONTROLS)
    return text


def _show(line: bytes) -> str:
    return repr(_text(line[:40]))


@attrs.frozen
class Capabilities:
    """What the server offered in its EHLO reply: keyword (upper case) → parameters.

    ``esmtp`` is False after a HELO fallback, when nothing may be assumed.
    """

    esmtp: bool = False
    extensions: Mapping[str, str] = attrs.field(factory=dict)

    def __contains__(self, keyword: str) -> bool:
        return keyword in self.extensions

    @property
    def size_limit(self) -> int | None:
        """The fixed maximum message size (RFC 1870), or None if none was announced
        (``SIZE`` alone or ``SIZE 0`` mean no fixed limit)."""
        value = self.extensions.get("SIZE", "")
        if not value.isdigit() or not value.isascii():
            return None
        return int(value) or None


def parse_capabilities(response: Response) -> Capabilities:
    """The extensions listed after the first line of an EHLO reply (RFC 5321 §4.1.1.1)."""
    extensions: dict[str, str] = {}
    for line in response.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            extensions.setdefault(keyword.upper(), params.strip())
    return Capabilities(esmtp=True, extensions=extensions)


def local_refusal(message: OutboundMessage, capabilities: Capabilities) -> Reply | None:
    """The reply every recipient gets when the message must not be offered to this
    server at all, or None to go ahead.

    A control character in an envelope address would inject commands (stored addresses
    are validated; this is the last line). A message whose envelope or header needs
    SMTPUTF8 cannot go to a server without it (RFC 6531 §3.2). A message larger than the
    server's announced SIZE would only be refused after its transfer (RFC 1870).
    """
    if _UNSAFE.search(message.sender) or any(_UNSAFE.search(r) for r in message.recipients):
        return _BAD_ADDRESS
    if _needs_smtputf8(message) and "SMTPUTF8" not in capabilities:
        return _NEED_SMTPUTF8
    limit = capabilities.size_limit
    if limit is not None and len(message.data) > limit:
        text = f"message of {len(message.data)} octets exceeds the server's limit of {limit}"
        return Reply(552, "5.3.4", text, remote=False)
    return None


def _needs_smtputf8(message: OutboundMessage) -> bool:
    """Flagged by the queue (UTF-8 headers), or implied by a non-ASCII envelope."""
    return message.smtputf8 or not (
        message.sender.isascii() and all(r.isascii() for r in message.recipients)
    )


def mail_command(message: OutboundMessage, capabilities: Capabilities) -> bytes:
    """``MAIL FROM`` with the parameters the server offers and the message needs.

    Without 8BITMIME an 8-bit message still goes, undeclared, as other MTAs send it.
    """
    line = f"MAIL FROM:<{message.sender}>"
    if "SIZE" in capabilities:
        line += f" SIZE={len(message.data)}"
    if message.eight_bit and "8BITMIME" in capabilities:
        line += " BODY=8BITMIME"
    if _needs_smtputf8(message):
        line += " SMTPUTF8"
    return (line + "\r\n").encode()


def _ok(reply: Reply | None) -> bool:
    return reply is not None and 200 <= reply.code < 300


def recipient_results(
    recipients: Sequence[str],
    mail: Reply | None,
    rcpts: Sequence[Reply],
    data: Reply | None,
    final: Reply | None,
) -> MessageResult:
    """Per recipient, the reply that decided it: MAIL's if the sender was refused, else
    its own RCPT reply if refused, else DATA's if refused, else the end-of-data reply.

    ``rcpts`` holds the RCPT replies received so far, in order; ``data`` is None unless
    DATA was refused.
    """
    decided: list[RecipientResult] = []
    for index, address in enumerate(recipients):
        rcpt = rcpts[index] if index < len(rcpts) else None
        if not _ok(mail):
            reply = mail
        elif not _ok(rcpt):
            reply = rcpt
        else:
            reply = data or final
        decided.append(RecipientResult(address, reply or _NO_OUTCOME))
    return MessageResult(tuple(decided))


def accepted(mail: Reply | None, rcpts: Sequence[Reply]) -> bool:
    """Whether the server took the sender and at least one recipient, so the message
    itself is to be sent."""
    return _ok(mail) and any(_ok(reply) for reply in rcpts)
