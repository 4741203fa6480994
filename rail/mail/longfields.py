"""Header fields whose value is too long for the ``email`` package, written in linear time.

The stdlib's header parser cuts each token off the front of the rest of the value, a copy
of the rest every time: its cost grows with the square of the value's length (a 160 KB
Subject of encoded words took 2.6 s, a 10 MB one would take hours) and it holds a thread
for as long. Values up to :data:`REGISTRY_MAX` characters still go through the header
registry, byte for byte what ``EmailMessage`` writes; longer ones are written here:

- text that can go out as it is (ASCII, or any UTF-8 under SMTPUTF8) is folded before
  white space, so unfolding (removing the CRLFs) gives the value back exactly;
- other text becomes base64 RFC 2047 encoded words of whole UTF-8 characters, separated
  by folds, which decoders join without the white space between them (RFC 2047 §6.2);
- an address list is written one mailbox at a time by the registry (each is short:
  display names and addresses are bounded) and the mailboxes joined with folds.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence

__all__ = ["REGISTRY_MAX", "fold_text", "join_address_fields"]

REGISTRY_MAX = 2048
"""Longest value, in characters, written by the ``email`` package's header registry."""

_LINE = 78  # RFC 5322 §2.1.1 SHOULD
_MAX_LINE = 998  # and MUST
_NOT_WSP = re.compile(r"[^ \t]")
_WSP = re.compile(r"[ \t]")
_WORD_PREFIX = b"=?utf-8?b?"
_WORD_SUFFIX = b"?="
_WORD_BYTES = 45  # 60 base64 characters: a 72-octet encoded word, a 73-octet line


def fold_text(name: str, value: str, raw_utf8: bool) -> bytes:
    """``name: value`` folded, CRLF-terminated: as it is when it may travel as it is
    (ASCII, or ``raw_utf8`` under SMTPUTF8) and no word is too long for a line (RFC 5322
    §2.1.1: 998 octets), else as encoded words."""
    if raw_utf8 or value.isascii():
        folded = _fold_words(name, value).encode("utf-8")
        if max(map(len, folded.split(b"\r\n"))) <= _MAX_LINE:
            return folded
    return _encoded_words(name, value)


def _fold_words(name: str, value: str) -> str:
    """Greedy folding: each line ends before the last white space that keeps it within
    78 octets, or, for a word longer than that, before the first white space after it.
    No line is white space alone, and white space at the very end is never a fold.

    Lines are found with ``rfind`` and searches over at most a line's worth of text at a
    time (a word's worth for a long word), so no single call holds the GIL for long when
    this runs in a worker thread: a ``findall`` over 10 MB held it for 200 ms."""
    head = f"{name}:" if value[:1] in (" ", "\t") else f"{name}: "
    text_end = len(value.rstrip(" \t"))  # only white space after this: no fold there
    lines: list[str] = []
    position = 0
    width = _LINE - len(head)
    while text_end - position > width:
        word = _NOT_WSP.search(value, position)
        assert word is not None  # position < text_end
        limit = position + width
        fold = max(
            value.rfind(" ", word.start() + 1, limit + 1),
            value.rfind("\t", word.start() + 1, limit + 1),
        )
        if fold < 0:
            after = _WSP.search(value, word.start())
            if after is None or after.start() >= text_end:
                break  # one last word, however long
            fold = after.start()
        lines.append(value[position:fold])
        position = fold
        width = _LINE
    lines.append(value[position:])
    return head + "\r\n".join(lines) + "\r\n"


def _encoded_words(name: str, value: str) -> bytes:
    data = value.encode("utf-8")
    words: list[bytes] = []
    start = 0
    while start < len(data):
        stop = min(start + _WORD_BYTES, len(data))
        while stop < len(data) and data[stop] & 0xC0 == 0x80:
            stop -= 1  # not inside a character: each word decodes on its own
        words.append(_WORD_PREFIX + base64.b64encode(data[start:stop]) + _WORD_SUFFIX)
        start = stop
    return name.encode("ascii") + b": " + b"\r\n ".join(words) + b"\r\n"


def join_address_fields(name: str, fields: Sequence[bytes]) -> bytes:
    """One address field from several written by the registry for one mailbox each
    (``Name: ...\\r\\n``): their values joined with a comma and a fold."""
    prefix = len(name) + 1
    values = [field[prefix:-2].removeprefix(b"\r\n") for field in fields]
    return name.encode("ascii") + b":" + b",\r\n".join(values) + b"\r\n"
