"""Reading an HTTP/1.1 response to a webhook POST (RFC 9112), from bytes, without I/O.

Rail needs three things from an answer: its status code, its ``Retry-After`` and whether
the connection can carry the next POST. The body is read and thrown away, up to a limit.
Twisted's Agent did this at about a fifth of the reactor's time per inbound message; this
parser does it directly on the bytes.

Framing follows RFC 9112 §6.3: no body for 1xx, 204 and 304; ``Transfer-Encoding`` ending in
``chunked`` is decoded (and wins over ``Content-Length``); another transfer coding, or no
length at all, means the body runs to the end of the connection; differing
``Content-Length`` values are an error. Interim 1xx answers are skipped (101 is an error:
nothing asked to switch protocols). Lines may end in CRLF or a bare LF (§2.2).
"""

from __future__ import annotations

import re

import attrs

__all__ = ["MAX_HEAD", "HTTPResponse", "ResponseError", "ResponseParser"]

MAX_HEAD = 64 * 1024
"""Bytes of status line and header fields accepted before the answer is refused."""

_MAX_CHUNK_LINE = 4096  # a chunk-size line with its extensions, or one trailer field
_STATUS = re.compile(rb"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: [^\r\n]*)?\r?")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r?")
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class ResponseError(Exception):
    """The peer's bytes are not an HTTP/1.1 response Rail can read."""


@attrs.frozen
class HTTPResponse:
    """What a webhook POST's answer says."""

    code: int
    retry_after: str | None
    reusable: bool
    """The connection can carry another request (the body was read to its end, and
    neither side asked to close)."""


@attrs.define
class _Head:
    code: int
    version: int
    fields: dict[bytes, list[bytes]]


class ResponseParser:
    """Feed it the bytes of one response; it returns the :class:`HTTPResponse` once the
    response is complete (or the body passes ``max_body``)."""

    def __init__(self, max_body: int, *, max_head: int = MAX_HEAD) -> None:
        self._max_body = max_body
        self._max_head = max_head
        self._buffer = b""
        self._head: _Head | None = None
        self._response: HTTPResponse | None = None
        self._body_left = 0  # bytes of body (or of the current chunk) still to come
        self._body_read = 0
        self._mode = "head"  # head, length, chunk-size, chunk-data, chunk-end, trailer, close
        self._scanned = 0  # bytes of the buffer searched for the end of the head
        self.leftover = b""
        """Bytes received after the end of a reusable response (none from a sane peer)."""

    def feed(self, data: bytes) -> HTTPResponse | None:
        """The response once complete, else None. Raises :class:`ResponseError`."""
        if self._response is not None:
            if self._response.reusable:
                self.leftover += data
            return self._response
        self._buffer += data
        while self._response is None and self._step():
            pass
        return self._response

    def end_of_stream(self) -> HTTPResponse | None:
        """The peer closed the connection: the response, if that completes it."""
        if self._response is None and self._mode == "close" and self._head is not None:
            self._finish(reusable=False)
        return self._response

    def _step(self) -> bool:
        """Consume what the buffer allows; True if there may be more to do."""
        mode = self._mode
        if mode == "head":
            return self._read_head()
        if mode in ("length", "chunk-data"):
            return self._read_body()
        if mode == "close":
            size, self._buffer = len(self._buffer), b""
            self._count(size)
            return False
        return self._read_chunk_line()

    def _read_head(self) -> bool:
        # Search only the new bytes (and the 3 before them, which may start the blank
        # line): a peer trickling its header section must not make each read rescan it.
        end = _END_OF_HEAD.search(self._buffer, max(0, self._scanned - 3))
        if end is None:
            self._scanned = len(self._buffer)
            # Up to 3 bytes of the blank line may be in the buffer already.
            if len(self._buffer) - 3 > self._max_head:
                raise ResponseError("response header section too long")
            return False
        if end.start() > self._max_head:
            raise ResponseError("response header section too long")
        head, self._buffer = self._buffer[: end.start()], self._buffer[end.end() :]
        self._scanned = 0
        lines = head.split(b"\n")
        status = _STATUS.fullmatch(lines[0])
        if status is None:
            raise ResponseError("malformed status line")
        code = int(status.group(2))
        fields = _fields(lines[1:])
        if code == 101:
            raise ResponseError("unexpected 101 Switching Protocols")
        if code < 200:
            return True  # interim answer: the final one follows
        self._head = _Head(code=code, version=int(status.group(1)), fields=fields)
        self._frame(code, fields)
        return True

    def _frame(self, code: int, fields: dict[bytes, list[bytes]]) -> None:
        coding = _tokens(fields.get(b"transfer-encoding", []))
        if code in (204, 304):
            self._finish(reusable=self._keep_alive())
        elif coding:
            self._mode = "chunk-size" if coding[-1] == b"chunked" else "close"
        elif b"content-length" in fields:
            self._body_left = _content_length(fields[b"content-length"])
            self._mode = "length"
            if self._body_left == 0:
                self._finish(reusable=self._keep_alive())
        else:
            self._mode = "close"

    def _read_body(self) -> bool:
        if not self._buffer:
            return False
        taken = min(len(self._buffer), self._body_left)
        self._buffer = self._buffer[taken:]
        self._body_left -= taken
        self._count(taken)
        if self._response is not None or self._body_left:
            return False
        if self._mode == "length":
            self._finish(reusable=self._keep_alive())
            return False
        self._mode = "chunk-end"
        return True

    def _read_chunk_line(self) -> bool:
        newline = self._buffer.find(b"\n", 0, _MAX_CHUNK_LINE + 1)
        if newline < 0:
            if len(self._buffer) > _MAX_CHUNK_LINE:
                raise ResponseError("chunk line too long")
            return False
        line, self._buffer = self._buffer[:newline], self._buffer[newline + 1 :]
        self._count(newline + 1)  # chunk sizes, extensions and trailers count as body
        if self._response is not None:
            return False
        if self._mode == "chunk-end":
            if line not in (b"", b"\r"):
                raise ResponseError("chunk data longer than its size")
            self._mode = "chunk-size"
        elif self._mode == "chunk-size":
            size = _CHUNK_SIZE.fullmatch(line)
            if size is None:
                raise ResponseError("malformed chunk size")
            self._body_left = int(size.group(1), 16)
            self._mode = "chunk-data" if self._body_left else "trailer"
        elif line in (b"", b"\r"):  # the end of the trailer section
            self._finish(reusable=self._keep_alive())
            return False
        return True

    def _count(self, size: int) -> None:
        self._body_read += size
        if self._body_read > self._max_body:
            self._finish(reusable=False)

    def _keep_alive(self) -> bool:
        head = self._head
        assert head is not None
        return head.version == 1 and b"close" not in _tokens(head.fields.get(b"connection", []))

    def _finish(self, *, reusable: bool) -> None:
        head = self._head
        assert head is not None
        retry_after = head.fields.get(b"retry-after")
        self._response = HTTPResponse(
            code=head.code,
            retry_after=retry_after[0].decode("latin-1") if retry_after else None,
            reusable=reusable,
        )
        # After a body cut short, what remains is more of it, not bytes after the answer.
        self.leftover, self._buffer = (self._buffer if reusable else b""), b""


def _fields(lines: list[bytes]) -> dict[bytes, list[bytes]]:
    fields: dict[bytes, list[bytes]] = {}
    for raw in lines:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            # obs-fold continuation lines (§5.2) and anything else land here
            raise ResponseError("malformed header field")
        fields.setdefault(name.lower(), []).append(value.strip(b" \t"))
    return fields


def _tokens(values: list[bytes]) -> list[bytes]:
    return [t.strip(b" \t").lower() for v in values for t in v.split(b",") if t.strip(b" \t")]


def _content_length(values: list[bytes]) -> int:
    lengths = {t.strip(b" \t") for v in values for t in v.split(b",")}
    if len(lengths) != 1:
        raise ResponseError("conflicting Content-Length")
    (length,) = lengths
    if not length.isdigit() or len(length) > 18:
        raise ResponseError("malformed Content-Length")
    return int(length)
