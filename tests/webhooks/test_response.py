"""The webhook response parser (:mod:`rail.webhooks.response`) on plain bytes.

Every valid case is fed twice, in one piece and one byte at a time, and must give the same
answer and the same ``leftover`` both ways: TCP may split the peer's bytes anywhere.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.webhooks.response import MAX_HEAD, HTTPResponse, ResponseError, ResponseParser

_Outcome = tuple[HTTPResponse | None, bytes]
"""What a parser made of some bytes: the answer (None: not complete) and ``leftover``."""

_MAX_BODY = 1024


def _ok(code: int = 200, retry_after: str | None = None) -> HTTPResponse:
    return HTTPResponse(code=code, retry_after=retry_after, reusable=True)


def _last(code: int = 200, retry_after: str | None = None) -> HTTPResponse:
    """An answer after which the connection must not carry another request."""
    return HTTPResponse(code=code, retry_after=retry_after, reusable=False)


def _feed(pieces: list[bytes], max_body: int, max_head: int, end: bool) -> _Outcome:
    parser = ResponseParser(max_body, max_head=max_head)
    response = None
    for piece in pieces:
        response = parser.feed(piece)
    if end:
        response = parser.end_of_stream()
    return response, parser.leftover


def _bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


class _ParserTestCase(SynchronousTestCase):
    def outcome(
        self,
        data: bytes,
        *,
        max_body: int = _MAX_BODY,
        max_head: int = MAX_HEAD,
        end: bool = False,
    ) -> _Outcome:
        """``data`` fed in one piece and byte by byte (then, with ``end``, the peer
        closes): both must agree, and that common outcome is returned."""
        whole = _feed([data], max_body, max_head, end)
        split = _feed(_bytewise(data), max_body, max_head, end)
        self.assertEqual(whole, split, f"one piece and byte by byte differ for {data!r}")
        return whole

    def response(
        self, data: bytes, *, max_body: int = _MAX_BODY, end: bool = False
    ) -> HTTPResponse | None:
        """The answer to ``data`` (which must hold nothing after the answer)."""
        response, leftover = self.outcome(data, max_body=max_body, end=end)
        self.assertEqual(leftover, b"", f"leftover for {data!r}")
        return response

    def refused(self, data: bytes, *, max_head: int = MAX_HEAD, end: bool = False) -> str:
        """``data`` is refused with a ResponseError in one piece and byte by byte, for
        the same reason; that reason is returned."""
        reasons = []
        for pieces in ([data], _bytewise(data)):
            parser = ResponseParser(_MAX_BODY, max_head=max_head)
            with self.assertRaises(ResponseError, msg=f"accepted: {data!r}") as raised:
                for piece in pieces:
                    parser.feed(piece)
                if end:
                    parser.end_of_stream()
            reasons.append(str(raised.exception))
        self.assertEqual(reasons[0], reasons[1], f"reasons differ for {data!r}")
        return reasons[0]

    def check_table(
        self,
        cases: list[tuple[bytes, HTTPResponse | None]],
        *,
        max_body: int = _MAX_BODY,
        end: bool = False,
    ) -> None:
        for data, expected in cases:
            self.assertEqual(self.response(data, max_body=max_body, end=end), expected, repr(data))

    def check_refusals(self, cases: list[tuple[bytes, str]], *, max_head: int = MAX_HEAD) -> None:
        for data, reason in cases:
            self.assertEqual(self.refused(data, max_head=max_head), reason, repr(data))


class FramingTests(_ParserTestCase):
    def test_content_length(self) -> None:
        """A body of exactly Content-Length bytes ends the answer, which can be followed
        by another on the same connection; identical duplicate lengths are one length."""
        self.check_table(
            [
                (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", _ok()),
                (b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nhello", _ok(202)),
                (b"HTTP/1.1 200 OK\r\ncontent-length:5\r\n\r\nhello", _ok()),
                (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", _ok()),
                (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", _ok()),
                (b"HTTP/1.1 200 OK\r\nContent-Length: 007\r\n\r\n1234567", _ok()),
                (b"HTTP/1.1 500 Oops\r\nContent-Length: 3\r\n\r\n\r\n\r", _ok(500)),
            ]
        )

    def test_content_length_incomplete(self) -> None:
        """Until the last byte of the body has arrived there is no answer; a close
        before then is no answer either (a cut body is not a response)."""
        data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhell"
        self.assertIsNone(self.response(data))
        self.assertIsNone(self.response(data, end=True))

    def test_no_body_for_204_and_304(self) -> None:
        """204 and 304 end with their header section whatever Content-Length says
        (RFC 9112 §6.3): waiting for a body would hang the connection."""
        self.check_table(
            [
                (b"HTTP/1.1 204 No Content\r\n\r\n", _ok(204)),
                (b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", _ok(204)),
                (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", _ok(304)),
                (b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", _ok(304)),
            ]
        )

    def test_chunked(self) -> None:
        """Chunked bodies are decoded, with extensions, trailer fields, bare-LF lines and
        any hex case, and a decoded body leaves the connection reusable."""
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        self.check_table(
            [
                (head + b"0\r\n\r\n", _ok()),
                (head + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", _ok()),
                (head + b"5;name=value\r\nhello\r\n0 ; last\r\n\r\n", _ok()),
                (head + b"5\r\nhello\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\n", _ok()),
                (head + b"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n", _ok()),
                (head + b"5\nhello\n0\n\n", _ok()),
                (head + b"05\r\nhello\r\n0000\r\n\r\n", _ok()),
                (
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                    b"3\r\nabc\r\n0\r\n\r\n",
                    _ok(),
                ),
                (
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
                    b"Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                    _ok(),
                ),
            ]
        )

    def test_chunked_incomplete(self) -> None:
        """A chunked body is complete only after the last chunk and the trailer section;
        a close anywhere before is no answer."""
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        for body in (b"", b"5\r\nhel", b"5\r\nhello\r\n", b"0\r\n", b"0\r\nX-Sum: 1\r\n"):
            self.assertIsNone(self.response(head + body), repr(body))
            self.assertIsNone(self.response(head + body, end=True), repr(body))

    def test_chunked_wins_over_content_length(self) -> None:
        """With both, Transfer-Encoding frames the body and Content-Length is ignored
        (RFC 9112 §6.3 rule 3), whether it is shorter or longer than the real body."""
        self.check_table(
            [
                (
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n"
                    b"\r\n5\r\nhello\r\n0\r\n\r\n",
                    _ok(),
                ),
                (
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n"
                    b"\r\n5\r\nhello\r\n0\r\n\r\n",
                    _ok(),
                ),
                (
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1, 2\r\n"
                    b"\r\n0\r\n\r\n",
                    _ok(),
                ),
            ]
        )

    def test_until_close(self) -> None:
        """Without a length, or with a transfer coding other than a final chunked, the
        body runs to the end of the connection: no answer until the peer closes, then
        one that is not reusable (the connection is gone)."""
        cases = [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b\x08\x00",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\nall of this is body",
            b"HTTP/1.1 503 Busy\r\nRetry-After: 60\r\n\r\n",
            b"HTTP/1.0 200 OK\r\n\r\nbody",
        ]
        for data in cases:
            self.assertIsNone(self.response(data), repr(data))
        self.check_table(
            [
                (cases[0], _last()),
                (cases[1], _last()),
                (cases[2], _last()),
                (cases[3], _last()),
                (cases[4], _last(503, "60")),
                (cases[5], _last()),
            ],
            end=True,
        )

    def test_end_of_stream_before_head(self) -> None:
        """A close before the header section is complete is no answer (the request
        fails rather than being taken as answered)."""
        for data in (b"", b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"):
            self.assertIsNone(self.response(data, end=True), repr(data))

    def test_interim_answers_skipped(self) -> None:
        """1xx answers are interim: the final answer that follows is the one returned,
        and an interim answer alone is no answer."""
        self.check_table(
            [
                (
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                    _ok(),
                ),
                (
                    b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
                    b"HTTP/1.1 100 Continue\r\n\r\n"
                    b"HTTP/1.1 429 Slow Down\r\nRetry-After: 5\r\nContent-Length: 2\r\n\r\nno",
                    _ok(429, "5"),
                ),
                (b"HTTP/1.1 100 Continue\n\nHTTP/1.1 204 No Content\n\n", _ok(204)),
                (b"HTTP/1.1 100 Continue\r\nRetry-After: 9\r\n\r\n", None),
            ]
        )
        self.assertIsNone(self.response(b"HTTP/1.1 100 Continue\r\n\r\n", end=True))

    def test_101_refused(self) -> None:
        """Nothing asked to switch protocols: a 101 is an error, not an interim answer
        to skip (the bytes after it would not be HTTP)."""
        self.check_refusals(
            [
                (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "unexpected 101 Switching Protocols"),
                (
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                    "unexpected 101 Switching Protocols",
                ),
            ]
        )

    def test_bare_lf(self) -> None:
        """Lines may end in a bare LF (RFC 9112 §2.2), or mix LF and CRLF."""
        self.check_table(
            [
                (b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", _ok()),
                (b"HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok", _ok()),
                (b"HTTP/1.1 200 OK\nRetry-After: 3\r\nContent-Length: 0\r\n\n", _ok(200, "3")),
                (b"HTTP/1.1 204\n\n", _ok(204)),
            ]
        )


class ReusableTests(_ParserTestCase):
    def test_table(self) -> None:
        """Only an HTTP/1.1 answer whose Connection field has no ``close`` token keeps
        the connection; HTTP/1.0 answers never do (Rail does not speak 1.0 keep-alive)."""
        body = b"Content-Length: 2\r\n\r\nok"
        self.check_table(
            [
                (b"HTTP/1.1 200 OK\r\n" + body, _ok()),
                (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n" + body, _ok()),
                (b"HTTP/1.0 200 OK\r\n" + body, _last()),
                (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n" + body, _last()),
                (b"HTTP/1.0 204 No Content\r\n\r\n", _last(204)),
                (b"HTTP/1.1 200 OK\r\nConnection: close\r\n" + body, _last()),
                (b"HTTP/1.1 200 OK\r\nConnection: CLOSE\r\n" + body, _last()),
                (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\n" + body, _last()),
                (b"HTTP/1.1 200 OK\r\nConnection: upgrade,close\r\n" + body, _last()),
                (
                    b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\n" + body,
                    _last(),
                ),
                (b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", _last(204)),
                (
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"0\r\n\r\n",
                    _last(),
                ),
            ]
        )

    def test_retry_after(self) -> None:
        """Retry-After is kept as text: the first field's value, trimmed, decoded as
        latin-1 (never a UnicodeDecodeError from a peer's odd byte)."""
        end = b"Content-Length: 0\r\n\r\n"
        self.check_table(
            [
                (b"HTTP/1.1 503 Busy\r\nRetry-After: 120\r\n" + end, _ok(503, "120")),
                (b"HTTP/1.1 503 Busy\r\nretry-after:   120 \t\r\n" + end, _ok(503, "120")),
                (
                    b"HTTP/1.1 429 Slow\r\nRetry-After: Fri, 31 Dec 1999 23:59:59 GMT\r\n" + end,
                    _ok(429, "Fri, 31 Dec 1999 23:59:59 GMT"),
                ),
                (
                    b"HTTP/1.1 429 Slow\r\nRetry-After: 10\r\nRetry-After: 20\r\n" + end,
                    _ok(429, "10"),
                ),
                (b"HTTP/1.1 503 Busy\r\nRetry-After: 1\xe9\xff\r\n" + end, _ok(503, "1\xe9\xff")),
                (b"HTTP/1.1 503 Busy\r\nRetry-After:\r\n" + end, _ok(503, "")),
                (b"HTTP/1.1 503 Busy\r\n" + end, _ok(503)),
            ]
        )


class LeftoverTests(_ParserTestCase):
    def test_bytes_after_the_answer(self) -> None:
        """Bytes after a complete answer are kept in ``leftover``, not parsed: a peer
        that sends more than it announced must not have it read as the next answer."""
        extra = b"HTTP/1.1 200 OK\r\n\r\n"
        cases = [
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", _ok()),
            (b"HTTP/1.1 204 No Content\r\n\r\n", _ok(204)),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", _ok()),
        ]
        for data, expected in cases:
            self.assertEqual(self.outcome(data + extra), (expected, extra), repr(data))

    def test_feed_after_the_answer(self) -> None:
        """Once complete, the parser keeps returning the same answer and only adds to
        ``leftover``, even for bytes that would be an error."""
        parser = ResponseParser(_MAX_BODY)
        answer = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokAB")
        self.assertEqual(answer, _ok())
        self.assertEqual(parser.feed(b"garbage\r\n\r\n"), _ok())
        self.assertEqual(parser.end_of_stream(), _ok())
        self.assertEqual(parser.leftover, b"ABgarbage\r\n\r\n")


class MaxBodyTests(_ParserTestCase):
    def test_body_over_max_body_completes_early(self) -> None:
        """Once more than ``max_body`` bytes of body have arrived, the answer is complete
        and not reusable: Rail stops reading a huge body and closes the connection."""
        more = b"x" * 11
        head = b"HTTP/1.1 200 OK\r\n"
        self.check_table(
            [
                (head + b"Content-Length: 70000\r\n\r\n" + more, _last()),
                (head + b"Transfer-Encoding: chunked\r\n\r\nffff\r\n" + more, _last()),
                (head + b"Transfer-Encoding: chunked\r\n\r\n5\r\nxxxxx\r\n6\r\nxxxxxx", _last()),
                (head + b"Retry-After: 4\r\n\r\n" + more, _last(200, "4")),
            ],
            max_body=10,
        )

    def test_body_of_max_body(self) -> None:
        """A body of exactly ``max_body`` bytes is read to its end normally; in a chunked
        body the chunk-size lines and trailers count too (else a peer could send them
        without end)."""
        self.check_table(
            [(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", _ok())],
            max_body=10,
        )
        chunked = b"4;ext=long-extension\r\n0123\r\n6\r\n456789\r\n0\r\nX-Trailer: y\r\n\r\n"
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        self.check_table([(head + chunked, _ok())], max_body=len(chunked))
        self.check_table([(head + chunked, _last())], max_body=len(chunked) - 1)
        self.assertIsNone(self.response(b"HTTP/1.1 200 OK\r\n\r\n0123456789", max_body=10))


class ErrorTests(_ParserTestCase):
    def test_malformed_status_line(self) -> None:
        """Only ``HTTP/1.0`` or ``HTTP/1.1``, a space and a three-digit code 100-599 is a
        status line: anything else is not an HTTP/1.x answer."""
        reason = "malformed status line"
        self.check_refusals(
            [
                (b"HTTP/2 200 OK\r\n\r\n", reason),
                (b"HTTP/1.1 20 OK\r\n\r\n", reason),
                (b"HTTP/1.1 2000 OK\r\n\r\n", reason),
                (b"HTTP/1.1 600 Beyond\r\n\r\n", reason),
                (b"HTTP/1.1 099 Below\r\n\r\n", reason),
                (b"HTTP/1.1 200OK\r\n\r\n", reason),
                (b"ICY 200 OK\r\n\r\n", reason),
                (b"HTTP/1.2 200 OK\r\n\r\n", reason),
                (b"http/1.1 200 OK\r\n\r\n", reason),
                (b" HTTP/1.1 200 OK\r\n\r\n", reason),
                (b"\r\nHTTP/1.1 200 OK\r\n\r\n", reason),
                (b"HTTP/1.1 200 O\rK\r\n\r\n", reason),
                (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", reason),
            ]
        )

    def test_malformed_header_field(self) -> None:
        """A field line must be a token, a colon and a value; obs-fold continuation lines
        are refused (RFC 9112 §5.2 allows that), as is whitespace before the colon
        (§5.1 requires it: it is a smuggling vector)."""
        reason = "malformed header field"
        self.check_refusals(
            [
                (
                    b"HTTP/1.1 200 OK\r\nX-Long: a\r\n  continued\r\nContent-Length: 0\r\n\r\n",
                    reason,
                ),
                (b"HTTP/1.1 200 OK\r\nX-Long: a\r\n\tcontinued\r\n\r\n", reason),
                (b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n", reason),
                (b"HTTP/1.1 200 OK\r\n: nameless\r\n\r\n", reason),
                (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", reason),
                (b"HTTP/1.1 200 OK\r\nX(bad): 1\r\n\r\n", reason),
                (b"HTTP/1.1 100 Continue\r\n bad\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", reason),
            ]
        )

    def test_bad_content_length(self) -> None:
        """Differing lengths are an error (which one frames the body is a smuggling
        question); so are lengths that are not plain decimal or absurdly long."""
        head = b"HTTP/1.1 200 OK\r\n"
        self.check_refusals(
            [
                (head + b"Content-Length: 5, 6\r\n\r\nhello", "conflicting Content-Length"),
                (
                    head + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
                    "conflicting Content-Length",
                ),
                (head + b"Content-Length: 5,\r\n\r\nhello", "conflicting Content-Length"),
                (head + b"Content-Length: -1\r\n\r\n", "malformed Content-Length"),
                (head + b"Content-Length: abc\r\n\r\n", "malformed Content-Length"),
                (head + b"Content-Length: +5\r\n\r\nhello", "malformed Content-Length"),
                (head + b"Content-Length: 0x10\r\n\r\n", "malformed Content-Length"),
                (head + b"Content-Length: 1 2\r\n\r\n", "malformed Content-Length"),
                (head + b"Content-Length:\r\n\r\n", "malformed Content-Length"),
                (head + b"Content-Length: " + b"9" * 19 + b"\r\n\r\n", "malformed Content-Length"),
                (head + b"Content-Length: " + b"1" * 40 + b"\r\n\r\n", "malformed Content-Length"),
            ]
        )

    def test_header_section_too_long(self) -> None:
        """A header section over ``max_head`` is refused, whether it ends or not: a peer
        cannot make Rail buffer an endless head."""
        long_field = b"X-Padding: " + b"p" * 200 + b"\r\n"
        self.check_refusals(
            [
                (b"HTTP/1.1 200 OK\r\n" + long_field + b"\r\n", "response header section too long"),
                (b"HTTP/1.1 200 OK\r\n" + long_field, "response header section too long"),
                (b"HTTP/1.1 200 OK\r\n" + long_field * 2, "response header section too long"),
                (b"HTTP/1.1 200 OK" + b" " * 300, "response header section too long"),
            ],
            max_head=128,
        )

    def test_default_max_head(self) -> None:
        """Without ``max_head``, a header section over :data:`MAX_HEAD` is refused, in one
        piece or in TCP-sized pieces (not byte by byte: the head search rescans the whole
        buffer on every feed, so 64 KiB one byte at a time takes seconds)."""
        data = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"p" * MAX_HEAD + b"\r\n\r\n"
        for size in (len(data), 1460):
            parser = ResponseParser(_MAX_BODY)
            with self.assertRaises(ResponseError, msg=f"pieces of {size}") as raised:
                for start in range(0, len(data), size):
                    parser.feed(data[start : start + size])
            self.assertEqual(str(raised.exception), "response header section too long")
        fits = (
            b"HTTP/1.1 200 OK\r\nX-Padding: "
            + b"p" * (MAX_HEAD // 2)
            + b"\r\nContent-Length: 0\r\n\r\n"
        )
        self.assertEqual(ResponseParser(_MAX_BODY).feed(fits), _ok())

    def test_header_section_under_max_head(self) -> None:
        """A header section comfortably within ``max_head`` is read, however split."""
        head = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"p" * 90 + b"\r\nContent-Length: 0"
        self.assertEqual(self.outcome(head + b"\r\n\r\n", max_head=len(head) + 16), (_ok(), b""))

    def test_max_head_boundary_independent_of_splitting(self) -> None:
        """A header section of exactly ``max_head`` bytes (up to the blank line) is
        accepted or refused the same way however TCP splits it."""
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 0"
        data = head + b"\r\n\r\n"
        verdicts = []
        for pieces in ([data], _bytewise(data)):
            try:
                verdicts.append(_feed(pieces, _MAX_BODY, len(head), end=False))
            except ResponseError as e:
                verdicts.append((None, str(e).encode()))
        self.assertEqual(verdicts[0], verdicts[1])

    def test_bad_chunk_size(self) -> None:
        """A chunk-size line must be 1-16 hex digits (optionally with extensions): signs,
        spaces first, or no digits at all are refused."""
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        reason = "malformed chunk size"
        self.check_refusals(
            [
                (head + b"xyz\r\n", reason),
                (head + b"\r\n", reason),
                (head + b"-1\r\n", reason),
                (head + b"+5\r\nhello\r\n", reason),
                (head + b" 5\r\nhello\r\n", reason),
                (head + b"0x5\r\nhello\r\n", reason),
                (head + b"1" * 17 + b"\r\n", reason),
                (head + b"5\r\nhello\r\nzz\r\n", reason),
            ]
        )

    def test_chunk_longer_than_its_size(self) -> None:
        """Chunk data must be followed by its line end at once: more data than the size
        said is an error, not a new chunk-size line (a smuggling vector)."""
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        reason = "chunk data longer than its size"
        self.check_refusals(
            [
                (head + b"3\r\nhello\r\n0\r\n\r\n", reason),
                (head + b"5\r\nhello!\r\n0\r\n\r\n", reason),
                (head + b"5\r\nhello\r\r\n0\r\n\r\n", reason),
            ]
        )

    def test_chunk_line_too_long(self) -> None:
        """A chunk-size line that never ends is refused once over 4 KiB."""
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        self.assertEqual(self.refused(head + b"5;" + b"e" * 5000), "chunk line too long")

    def test_errors_not_hidden_by_end_of_stream(self) -> None:
        """A close after refused bytes is still refused (the error is raised by feed)."""
        self.assertEqual(self.refused(b"ICY 200 OK\r\n\r\n", end=True), "malformed status line")
