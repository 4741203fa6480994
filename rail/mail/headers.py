"""Reading and completing the header section of a submitted message (CRLF bytes).

Rail changes a submitted message only by adding header fields, never by rewriting the
ones the app wrote, so what the app signed off is what is DKIM-signed and sent. Parsing is
deliberately small: header fields are found by RFC 5322 syntax on raw lines; addresses are
read with the stdlib's strict ``getaddresses``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime, getaddresses

import attrs

__all__ = ["HeaderSection", "completed", "format_date", "parse_header_section"]

_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")


@attrs.frozen
class HeaderSection:
    """``fields`` are (lower-case name, unfolded value) pairs in order; ``end`` is the
    offset where the header section ends (before the empty line), ``has_separator``
    whether the message has the empty line that separates it from the body."""

    fields: tuple[tuple[str, str], ...]
    end: int
    has_separator: bool

    def values(self, name: str) -> list[str]:
        return [value for field, value in self.fields if field == name]

    def has(self, name: str) -> bool:
        return any(field == name for field, _ in self.fields)

    def addresses(self, name: str) -> list[str]:
        """The addr-specs in every ``name`` field; an unparsable field yields ``""``."""
        pairs = getaddresses(self.values(name))
        return [address for _, address in pairs] or [""] * len(self.values(name))


def parse_header_section(data: bytes) -> HeaderSection:
    """Find the header fields at the start of ``data`` (CRLF lines).

    The section ends at the empty line, or at the first line that is neither a field nor
    a continuation; such a message has no separator and :func:`completed` adds one, so the
    line stays body rather than becoming a malformed header.
    """
    fields: list[tuple[str, bytes]] = []
    position = 0
    length = len(data)
    while position < length:
        end = data.find(b"\r\n", position)
        if end < 0:
            end = length
        line = data[position:end]
        if not line:
            return _section(fields, position, True)
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + line)
        else:
            match = _FIELD.match(line)
            if match is None:
                return _section(fields, position, False)
            fields.append((match.group(1).decode("ascii").lower(), line[match.end() :]))
        position = end + 2
    return _section(fields, min(position, length), False)


def _section(fields: list[tuple[str, bytes]], end: int, separator: bool) -> HeaderSection:
    decoded = tuple((name, value.decode("utf-8", "replace").strip(" \t")) for name, value in fields)
    return HeaderSection(fields=decoded, end=end, has_separator=separator)


def format_date(now: float) -> str:
    """An RFC 5322 date-time in UTC (``Sat, 21 Nov 2026 04:07:13 +0000``)."""
    return format_datetime(datetime.fromtimestamp(now, UTC))


def completed(
    data: bytes,
    section: HeaderSection,
    *,
    prepend: list[str],
    defaults: list[tuple[str, str]],
) -> bytes:
    """``data`` with ``prepend`` fields (complete ``Name: value`` strings, folded with CRLF
    TAB where needed) at the top, and each ``(name, field)`` of ``defaults`` added at the
    end of the header section when no field ``name`` exists."""
    top = "".join(f"{field}\r\n" for field in prepend).encode("utf-8")
    added = "".join(
        f"{field}\r\n" for name, field in defaults if not section.has(name.lower())
    ).encode("utf-8")
    head, body = data[: section.end], data[section.end :]
    if head and not head.endswith(b"\r\n"):
        head += b"\r\n"
    if not section.has_separator:
        body = b"\r\n" + body
    return top + head + added + body
