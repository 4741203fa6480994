"""The linear header splits give exactly what reading the header line by line gives.

``split_message`` (DKIM), ``parse_header_section`` (intake) and ``header_excess`` (the
header cap) cut fields out whole instead of rebuilding them a line at a time; here they
are compared with line-by-line references (the algorithms they replaced) on random
inputs made of the pieces that matter: CRLF, folds, bare CR and LF, colons, non-fields.
"""

from __future__ import annotations

import random
import re

from twisted.trial.unittest import SynchronousTestCase

from rail.dkim.canonical import split_message
from rail.mail.headers import HeaderLimits, header_excess, parse_header_section

_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
_PIECES = [
    b"A: b",
    b"Subject: hello",
    b"\r\n",
    b"\r\n ",
    b" ",
    b"\t",
    b"x",
    b":",
    b"\r\n\r\n",
    b"bad line",
    b"\r",
    b"\n",
    b"\xc3\xa9",
]


def reference_split(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    if data.startswith(b"\r\n"):
        return [], data[2:]
    end = data.find(b"\r\n\r\n")
    header, body = (data.removesuffix(b"\r\n"), b"") if end < 0 else (data[:end], data[end + 4 :])
    fields: list[tuple[bytes, bytes]] = []
    for number, line in enumerate(header.split(b"\r\n"), 1):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + b"\r\n" + line)
            continue
        match = _FIELD.match(line)
        if match is None:
            raise ValueError(f"header line {number} is not a header field")
        fields.append((match.group(1).lower(), line[match.end() :]))
    return fields, body


def reference_section(data: bytes) -> tuple[tuple[tuple[str, str], ...], int, bool]:
    fields: list[tuple[str, bytes]] = []
    position = 0
    while position < len(data):
        end = data.find(b"\r\n", position)
        end = len(data) if end < 0 else end
        line = data[position:end]
        if not line:
            return _decoded(fields), position, True
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + line)
        else:
            match = _FIELD.match(line)
            if match is None:
                return _decoded(fields), position, False
            fields.append((match.group(1).decode("ascii").lower(), line[match.end() :]))
        position = end + 2
    return _decoded(fields), min(position, len(data)), False


def _decoded(fields: list[tuple[str, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple((n, v.decode("utf-8", "replace").strip(" \t")) for n, v in fields)


def _inputs(count: int) -> list[bytes]:
    rnd = random.Random(14)
    return [b"".join(rnd.choice(_PIECES) for _ in range(rnd.randint(0, 14))) for _ in range(count)]


class SplitTests(SynchronousTestCase):
    def test_split_message_as_line_by_line(self) -> None:
        """split_message gives the fields, body and errors (with line numbers) of the
        line-by-line reading, for 20,000 random inputs."""
        for data in _inputs(20_000):
            try:
                expected: object = reference_split(data)
            except ValueError as error:
                expected = str(error)
            try:
                got: object = split_message(data)
            except ValueError as error:
                got = str(error)
            self.assertEqual(got, expected, data)

    def test_parse_header_section_as_line_by_line(self) -> None:
        """parse_header_section finds the same fields, end and separator as the
        line-by-line reading, for 20,000 random inputs."""
        for data in _inputs(20_000):
            section = parse_header_section(data)
            got = (section.fields, section.end, section.has_separator)
            self.assertEqual(got, reference_section(data), data)

    def test_header_excess_measures_the_parsed_section(self) -> None:
        """header_excess refuses exactly the sections parse_header_section finds over the
        limits; the only extra refusals are lines running past the size window (which
        could be fields) and a section over both limits may be named for either."""
        rnd = random.Random(15)
        prefix = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*")
        for data in _inputs(20_000):
            limits = HeaderLimits(size=rnd.randint(0, 40), fields=rnd.randint(0, 5))
            section = parse_header_section(data)
            over_size = section.end > limits.size
            over_fields = len(section.fields) > limits.fields
            got = header_excess(data, limits)
            if over_size or over_fields:
                self.assertIsNotNone(got, (data, limits))
                if over_size != over_fields:
                    self.assertEqual(got, "header_size" if over_size else "header_fields")
            elif got is not None:
                cut = prefix.match(data, section.end)
                self.assertEqual(got, "header_size", (data, limits))
                self.assertTrue(cut is not None and cut.end() >= limits.size + 2, (data, limits))
