"""DKIM "relaxed" canonicalization of a CRLF message (RFC 6376 §3.4.2 and §3.4.4).

Written here rather than borrowed from dkimpy because signing is on every message's path
and dkimpy's general machinery (re-parsing, re-splitting lines, LF tolerance) costs more
than the signature itself. The rules are the RFC's; tests check the result against
dkimpy's verifier, which canonicalizes independently.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["Field", "relaxed_body", "relaxed_field", "select_fields", "split_message"]

Field = tuple[bytes, bytes]
"""(lower-case name, raw value after the colon, folding CRLFs included)."""

_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
# Where a header field starts: after a CRLF that is not followed by WSP (a fold).
_FIELD_START = re.compile(rb"\r\n(?![ \t])")
# Runs of WSP that are not already a single space: replacing only those is the same
# compression, and ordinary text, which has many single spaces, has almost none of them.
_WSP = re.compile(rb"\t[ \t]*| [ \t]+")


def split_message(data: bytes) -> tuple[list[Field], bytes]:
    """The header fields and the body of ``data``.

    The header section ends at the first empty line; a message without one is all header
    and has an empty body. ``ValueError`` for a line that is neither a field nor a
    continuation: verifiers would each read such a message their own way.

    Each field is cut out whole (a CRLF not followed by WSP starts the next one), so the
    cost is linear in the header section however many continuation lines a field has;
    rebuilding a field line by line was quadratic in them.
    """
    if data.startswith(b"\r\n"):
        return [], data[2:]
    end = data.find(b"\r\n\r\n")
    if end < 0:
        header, body = data.removesuffix(b"\r\n"), b""
    else:
        header, body = data[:end], data[end + 4 :]
    fields: list[Field] = []
    chunks = _FIELD_START.split(header)
    for index, chunk in enumerate(chunks):
        match = _FIELD.match(chunk)
        if match is None:
            number = 1 + sum(before.count(b"\r\n") + 1 for before in chunks[:index])
            raise ValueError(f"header line {number} is not a header field")
        fields.append((match.group(1).lower(), chunk[match.end() :]))
    return fields, body


def relaxed_field(name: bytes, value: bytes) -> bytes:
    """``name:value`` unfolded, runs of WSP as one space, no WSP around the value; without
    the CRLF, which the caller adds (the signature field itself is hashed without one)."""
    return name + b":" + _WSP.sub(b" ", value.replace(b"\r\n", b"")).strip(b" \t")


def select_fields(fields: Sequence[Field], names: Sequence[bytes]) -> list[bytes]:
    """The relaxed forms (with CRLF) of the fields ``names`` (an ``h=`` list) designates.

    A name listed several times takes that field's instances from the bottom up; a name
    listed more often than it occurs designates nothing the extra times, which is what
    makes over-signing refuse an added field (RFC 6376 §5.4.2).
    """
    selected = []
    below: dict[bytes, int] = {}
    for name in names:
        index = below.get(name, len(fields))
        while index > 0:
            index -= 1
            if fields[index][0] == name:
                selected.append(relaxed_field(*fields[index]) + b"\r\n")
                break
        below[name] = index
    return selected


def relaxed_body(body: bytes) -> bytes:
    """WSP runs as one space, none at line ends, no empty lines at the end, and a final
    CRLF unless the body is empty.

    A last line without CRLF loses its trailing WSP too (as Mail::DKIM does; dkimpy keeps
    it): SMTP adds that CRLF in transit, so this is the body receivers will verify.
    """
    lines = [line.rstrip(b" \t") for line in body.split(b"\r\n")]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return b""
    return _WSP.sub(b" ", b"\r\n".join(lines)) + b"\r\n"
