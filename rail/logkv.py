"""Structured log lines: an event kind and named fields, written as ``key=value`` text.

The delivery, webhook and acceptance lines are read by people (``grep``) and by programs
(a log collector indexing fields), so each is emitted with its fields as plain event keys
(what the JSON format writes, see :mod:`rail.logjson`) plus ``rail_event`` (the line
kind) and ``rail_text``, the same fields rendered once as ``kind key=value ...``. The
event's format string is just ``{rail_text}``: Rail's text formatter
(:mod:`rail.logtext`) compiles it once, and Twisted's own formatter (syslog, trial's log)
gives the same text.

A value is written bare when it has no space, quote, ``=``, backslash or control
character; otherwise it is double-quoted with ``\\"``, ``\\\\``, ``\\n``, ``\\r``, ``\\t``
and ``\\xNN`` escapes, so a remote reply can never break a line or forge a field. None is
written ``-``; True and False ``true`` and ``false``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from twisted.logger import Logger, LogLevel

__all__ = ["emit", "value_text"]

_PLAIN = re.compile(r'[^\s"=\\\x00-\x1f\x7f\x85\u2028\u2029]+')
_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F)}
_ESCAPES.update(
    {
        ord("\\"): "\\\\",
        ord('"'): '\\"',
        ord("\n"): "\\n",
        ord("\r"): "\\r",
        ord("\t"): "\\t",
        0x85: "\\x85",
        0x2028: "\\u2028",
        0x2029: "\\u2029",
    }
)


def value_text(value: object) -> str:
    """One field's value as ``key=value`` text writes it (see the module docstring)."""
    if value is None:
        return "-"
    if value is True:
        return "true"
    if value is False:
        return "false"
    text = value if isinstance(value, str) else str(value)
    if _PLAIN.fullmatch(text):
        return text
    return '"' + text.translate(_ESCAPES) + '"'


def emit(
    logger: Logger, kind: str, fields: Mapping[str, object], level: LogLevel = LogLevel.info
) -> None:
    """Log one structured line of ``kind`` with ``fields``, in their order."""
    parts = [kind]
    append, plain = parts.append, _PLAIN.fullmatch
    for key, value in fields.items():
        # value_text inlined for the common cases: a delivery line has a dozen fields.
        if value.__class__ is str and plain(value):
            append(f"{key}={value}")
        elif value is None:
            append(f"{key}=-")
        else:
            append(f"{key}={value_text(value)}")
    logger.emit(level, "{rail_text}", rail_event=kind, rail_text=" ".join(parts), **fields)
