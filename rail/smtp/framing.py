"""Strict SMTP line framing: CRLF only, no bare CR, no bare LF, no NUL, bounded lines.

twisted.mail's LineOnlyReceiver accepts bare CR and LF inside lines (the raw material of
SMTP smuggling), runs the rest of a message as commands after an over-long line, and lets
an unterminated line grow without bound. Rail frames the byte stream itself and stops at
the first violation: the session answers ``500`` and closes, so nothing ambiguous is ever
interpreted by Rail or passed on to the next hop.

A line that begins with a dot may be one octet longer: in DATA that dot is the
transparency dot a client adds (RFC 5321 §4.5.2), which §4.5.3.1.6 does not count, so a
998-octet text line that starts with a dot arrives as 999 octets plus CRLF. Outside DATA
such a line is an unknown command, refused as any other.
"""

from __future__ import annotations

from rail.policy.verdict import Reject

__all__ = ["BARE_CR", "BARE_LF", "LINE_TOO_LONG", "MAX_LINE", "NUL", "LineFramer"]

MAX_LINE = 1000
"""Octets in a line including its CRLF (RFC 5321 §4.5.3.1.4 and .6), not counting a
leading transparency dot."""

BARE_LF = Reject(500, "5.5.2", "Bare LF not allowed; lines must end with CRLF")
BARE_CR = Reject(500, "5.5.2", "Bare CR not allowed; lines must end with CRLF")
NUL = Reject(500, "5.5.2", "NUL not allowed")
LINE_TOO_LONG = Reject(500, "5.5.2", "Line too long")
"""RFC 5321 §4.5.3.1's own example reply; X.5.2 is RFC 3463's "syntax error" (X.5.6,
which Rail once sent, is RFC 4954's AUTH line too long). The protocol answers an over-long
line inside DATA with its own reply (a content error, X.6.0)."""


class LineFramer:
    """Splits a byte stream into lines, refusing anything that is not strict CRLF framing.

    :meth:`feed` returns the complete lines (without CRLF) found so far and, once the
    stream is invalid, the reason; after that every call returns nothing. The buffer never
    holds more than one partial line of at most ``max_line`` octets.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        # Without the transparency dot; a line starting with a dot may have one more.
        self._max_text = max_line - 2
        self._buffer = b""
        self._failed = False

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> tuple[list[bytes], Reject | None]:
        if self._failed:
            return [], None
        buf = self._buffer + data if self._buffer else data
        # Clean input (every CR and LF in CRLF pairs but a final CR, no NUL, no long line)
        # is split by bytes methods in C; anything else is judged line by line below, which
        # also finds the lines that came before the fault.
        crlf = buf.count(b"\r\n")
        if (
            buf.count(b"\n") == crlf
            and buf.count(b"\r") - crlf == (buf[-1:] == b"\r")
            and b"\x00" not in buf
        ):
            lines = buf.split(b"\r\n")
            rest = lines.pop()
            # Lines up to the limit pass here; dot-started lines one octet longer are
            # rare and judged below.
            if len(rest) <= self._max_text + 1 and (
                not lines or max(map(len, lines)) <= self._max_text
            ):
                self._buffer = rest
                return lines, None
        return self._feed_checked(buf)

    def _feed_checked(self, buf: bytes) -> tuple[list[bytes], Reject | None]:
        lines: list[bytes] = []
        start = 0
        max_text = self._max_text
        find = buf.find
        while True:
            end = find(b"\n", start)
            if end < 0:
                break
            if end == start or buf[end - 1] != 0x0D:
                return self._fail(lines, BARE_LF)
            line = buf[start : end - 1]
            if len(line) > max_text + (line[:1] == b"."):
                return self._fail(lines, LINE_TOO_LONG)
            if b"\r" in line:
                return self._fail(lines, BARE_CR)
            if b"\x00" in line:
                return self._fail(lines, NUL)
            lines.append(line)
            start = end + 1
        rest = buf[start:]
        # Judge the unterminated remainder now: waiting for its end would let a peer make
        # Rail hold (and rescan) an unbounded line.
        # + 1 for a final CR whose LF has not arrived yet.
        if len(rest) > max_text + 1 + (rest[:1] == b"."):
            return self._fail(lines, LINE_TOO_LONG)
        if b"\x00" in rest:
            return self._fail(lines, NUL)
        cr = rest.find(b"\r")
        if cr >= 0 and cr != len(rest) - 1:
            return self._fail(lines, BARE_CR)
        self._buffer = rest
        return lines, None

    def _fail(self, lines: list[bytes], reason: Reject) -> tuple[list[bytes], Reject | None]:
        self._failed = True
        self._buffer = b""
        return lines, reason
