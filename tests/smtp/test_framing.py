"""LineFramer: strict CRLF framing, the same verdicts however the bytes are split."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from rail.policy.verdict import Reject
from rail.smtp.framing import BARE_CR, BARE_LF, LINE_TOO_LONG, NUL, LineFramer


class _CheckedOnly(LineFramer):
    """Always the line-by-line path: the reference the bulk path must agree with."""

    def feed(self, data: bytes) -> tuple[list[bytes], Reject | None]:
        if self._failed:
            return [], None
        buf = self._buffer + data if self._buffer else data
        return self._feed_checked(buf)


def _run(framer: LineFramer, chunks: list[bytes]) -> tuple[object, ...]:
    return (*(framer.feed(chunk) for chunk in chunks), framer.buffered)


class LineFramerTests(SynchronousTestCase):
    def feed_all(self, data: bytes, max_line: int = 1000) -> tuple[list[bytes], Reject | None]:
        framer = LineFramer(max_line)
        lines, reason = framer.feed(data)
        return lines, reason

    def test_lines(self) -> None:
        self.assertEqual(self.feed_all(b"EHLO a\r\nMAIL\r\npart"), ([b"EHLO a", b"MAIL"], None))
        self.assertEqual(self.feed_all(b"\r\n\r\n"), ([b"", b""], None))

    def test_faults_keep_the_lines_before_them(self) -> None:
        cases = {
            b"ok\r\nbare\nx": BARE_LF,
            b"ok\r\n\n": BARE_LF,
            b"ok\r\nba\rre\r\n": BARE_CR,
            b"ok\r\nnul\x00\r\n": NUL,
            b"ok\r\n" + b"x" * 999 + b"\r\n": LINE_TOO_LONG,
            b"ok\r\n" + b"x" * 1000: LINE_TOO_LONG,
            b"ok\r\nab\rc": BARE_CR,
            b"ok\r\nab\x00": NUL,
        }
        for data, reason in cases.items():
            self.assertEqual(self.feed_all(data), ([b"ok"], reason), data[:20])

    def test_longest_line_and_final_cr_accepted(self) -> None:
        line = b"x" * 998
        self.assertEqual(self.feed_all(line + b"\r\n"), ([line], None))

    def test_transparency_dot_not_counted(self) -> None:
        """A line starting with a dot may have 999 octets before CRLF (the dot a client
        adds in DATA, RFC 5321 §4.5.3.1.6); 1000 is too long, and so is a 999-octet line
        without the dot, whole or still arriving."""
        stuffed = b".." + b"x" * 997
        self.assertEqual(self.feed_all(b"ok\r\n" + stuffed + b"\r\n"), ([b"ok", stuffed], None))
        framer = LineFramer()
        self.assertEqual(framer.feed(stuffed + b"\r"), ([], None))
        self.assertEqual(framer.feed(b"\n"), ([stuffed], None))
        self.assertEqual(self.feed_all(b"." + stuffed + b"\r\n"), ([], LINE_TOO_LONG))
        self.assertEqual(self.feed_all(b"." + stuffed + b"x"), ([], LINE_TOO_LONG))
        self.assertEqual(self.feed_all(b"x" * 999 + b"\r\n"), ([], LINE_TOO_LONG))
        framer = LineFramer()
        self.assertEqual(framer.feed(b"abc\r"), ([], None))
        self.assertEqual(framer.feed(b"\ndef\r\n"), ([b"abc", b"def"], None))

    def test_nothing_after_a_fault(self) -> None:
        framer = LineFramer()
        framer.feed(b"a\nb")
        self.assertEqual(framer.feed(b"c\r\n"), ([], None))

    def test_same_as_line_by_line_for_any_split(self) -> None:
        """The bulk path (bytes methods) and the line-by-line path agree on random streams
        of CR, LF, NUL and text, split at random points."""
        rng = random.Random(7)
        alphabet = [b"a", b"bc", b"\r\n", b"\r\n", b"\r\n", b"\r", b"\n", b"\x00", b"x" * 9, b"."]
        for _ in range(3000):
            weights = [30, 10, 20, 20, 20, rng.choice((0, 1)), rng.choice((0, 1)), 0, 3, 5]
            if rng.random() < 0.1:
                weights[7] = 1
            pieces = rng.choices(alphabet, weights, k=rng.randrange(1, 40))
            data = b"".join(pieces)
            cuts = sorted(rng.sample(range(len(data) + 1), min(3, len(data) + 1)))
            chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
            max_line = rng.choice((8, 20, 1000))
            self.assertEqual(
                _run(LineFramer(max_line), chunks),
                _run(_CheckedOnly(max_line), chunks),
                (data, chunks, max_line),
            )
