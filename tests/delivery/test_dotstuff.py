"""Dot-stuffing of the DATA stream: every offset, and never an early end of data."""

from __future__ import annotations

import re

from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.dotstuff import dot_stuff

LONE_DOT = re.compile(rb"(?:^|(?<=[\r\n]))\.(?=[\r\n])")


def unstuff(stream: bytes) -> tuple[bytes, bytes]:
    """What a strict CRLF receiver makes of ``stream``: (message, bytes after the end)."""
    lines = stream.split(b"\r\n")
    message: list[bytes] = []
    for index, line in enumerate(lines):
        if line == b".":
            return b"".join(m + b"\r\n" for m in message), b"\r\n".join(lines[index + 1 :])
        message.append(line[1:] if line.startswith(b".") else line)
    raise AssertionError("no end of data")


def lenient_ends(stream: bytes) -> list[int]:
    """Offsets where a receiver taking any of CRLF, bare LF or bare CR as a line end
    would see a line that is a lone ``.``."""
    return [match.start() for match in LONE_DOT.finditer(stream)]


class DotStuffTests(SynchronousTestCase):
    def test_plain_message(self) -> None:
        """A message without leading dots goes out unchanged, then ``.\\r\\n``."""
        self.assertEqual(
            dot_stuff(b"Subject: x\r\n\r\nhello\r\n"), b"Subject: x\r\n\r\nhello\r\n.\r\n"
        )

    def test_dot_line_at_offset_zero(self) -> None:
        """A ``.`` line as the very first line is doubled (Twisted misses this one)."""
        self.assertEqual(dot_stuff(b".\r\nafter\r\n"), b"..\r\nafter\r\n.\r\n")
        self.assertEqual(unstuff(dot_stuff(b".\r\nafter\r\n")), (b".\r\nafter\r\n", b""))

    def test_dot_line_at_16_kib(self) -> None:
        """A ``.`` line starting at exactly byte 16,384 (Twisted's chunk boundary) is
        doubled, and the message comes back whole."""
        head = b"Subject: x\r\n\r\n"
        filler = b"x" * (16_384 - len(head) - 2) + b"\r\n"
        data = head + filler + b".\r\nMAIL FROM:<forged@example.com>\r\n"
        self.assertEqual(data.index(b"\r\n.\r\n") + 2, 16_384)
        stream = dot_stuff(data)
        self.assertEqual(stream[16_384:16_388], b"..\r\n")
        self.assertEqual(unstuff(stream), (data, b""))

    def test_six_thousand_dot_lines(self) -> None:
        """6,000 lines that are each ``.`` come back as exactly those lines."""
        data = b"Subject: dots\r\n\r\n" + b".\r\n" * 6000
        stream = dot_stuff(data)
        self.assertEqual(stream, b"Subject: dots\r\n\r\n" + b"..\r\n" * 6000 + b".\r\n")
        self.assertEqual(unstuff(stream), (data, b""))

    def test_leading_dots_doubled_once_more(self) -> None:
        """``..`` and ``.x`` lines get exactly one more dot; dots inside lines are left."""
        data = b"..\r\n.x\r\na.b\r\n...\r\n"
        self.assertEqual(dot_stuff(data), b"...\r\n..x\r\na.b\r\n....\r\n.\r\n")
        self.assertEqual(unstuff(dot_stuff(data)), (data, b""))

    def test_missing_final_crlf_is_added(self) -> None:
        """A message not ending in CRLF gets one before the end-of-data line, so its last
        line, even a ``.``, is not taken for the end."""
        self.assertEqual(dot_stuff(b"a\r\nlast"), b"a\r\nlast\r\n.\r\n")
        self.assertEqual(dot_stuff(b"a\r\n."), b"a\r\n..\r\n.\r\n")
        self.assertEqual(dot_stuff(b"."), b"..\r\n.\r\n")

    def test_empty_message(self) -> None:
        """An empty message is the end-of-data line alone: zero octets, not an empty line."""
        self.assertEqual(dot_stuff(b""), b".\r\n")
        self.assertEqual(unstuff(dot_stuff(b"")), (b"", b""))

    def test_bare_lf_and_cr_never_end_data_early(self) -> None:
        """Stored data is CRLF, but if a bare LF or CR slipped in, a dot after it is
        doubled too: no receiver, strict or lenient about line ends, sees an end of data
        before the real one. The strict reading keeps the extra dot."""
        for data in (
            b"a\n.\nMAIL FROM:<x@y>\r\n",
            b"a\n.\r\nb\r\n",
            b"a\r.\rb\r\n",
            b"a\r\n.\nb\r\n",
            b"a\r\n.\rb\r\n",
            b"\n.\n",
            b"x\r\r\n.\r\n",
        ):
            stream = dot_stuff(data)
            self.assertEqual(lenient_ends(stream), [len(stream) - 3], data)
        self.assertEqual(dot_stuff(b"a\n.\nb\r\n"), b"a\n..\nb\r\n.\r\n")
        self.assertEqual(dot_stuff(b"a\r.\rb\r\n"), b"a\r..\rb\r\n.\r\n")

    def test_nul_and_eight_bit_pass_through(self) -> None:
        """Octets other than line ends and leading dots are sent as stored."""
        data = b"\x00\xff\xc3\xa9\t \r\n"
        self.assertEqual(dot_stuff(data), data + b".\r\n")

    def test_every_offset_of_a_dot_line(self) -> None:
        """Wherever a ``.`` line falls in the first 70 KiB, the stream carries exactly one
        end of data, at its end."""
        base = (b"0123456789" * 7 + b"\r\n") * 1000
        for offset in range(0, len(base), 4096 - 72 * 3):
            cut = base.rfind(b"\r\n", 0, offset) + 2 if offset else 0
            data = base[:cut] + b".\r\n" + base[cut:]
            stream = dot_stuff(data)
            self.assertEqual(lenient_ends(stream), [len(stream) - 3])
            self.assertEqual(unstuff(stream), (data, b""))
