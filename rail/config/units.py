"""Durations and sizes as operators write them: ``"15m"``, ``"5d"``, ``"50MB"``.

A bare number is refused for durations because its unit is a guess (seconds? minutes?) and a
wrong guess in a retry schedule or a validity period goes unnoticed for a long time. Sizes may
be plain integers because bytes are the only sensible unit for one.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["parse_duration", "parse_size"]

_DURATION_EXAMPLE = 'expected a duration like "15m" or "5d"'
_SIZE_EXAMPLE = 'expected a size like "50MB" or "64KB"'

# Milliseconds per unit; integer arithmetic keeps "1h30m" and "250ms" exact.
_DURATION_UNITS_MS = {
    "w": 7 * 24 * 3600 * 1000,
    "d": 24 * 3600 * 1000,
    "h": 3600 * 1000,
    "m": 60 * 1000,
    "s": 1000,
    "ms": 1,
}
# Each unit at most once, largest first: "1h30m", not "30m1h" or "1h1h".
_DURATION = re.compile(
    r"(?:(?P<w>[0-9]+)w)?(?:(?P<d>[0-9]+)d)?(?:(?P<h>[0-9]+)h)?"
    r"(?:(?P<m>[0-9]+)m)?(?:(?P<s>[0-9]+)s)?(?:(?P<ms>[0-9]+)ms)?"
)

# KB, MB and GB are powers of 1024, the same as KiB, MiB and GiB: nobody sizing a mail body
# means 1000, and two meanings for one word in the same file would be a trap.
_SIZE_UNITS = {
    "b": 1,
    "kb": 1024,
    "kib": 1024,
    "mb": 1024**2,
    "mib": 1024**2,
    "gb": 1024**3,
    "gib": 1024**3,
}
_SIZE = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>[A-Za-z]+)")
_DIGITS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_duration(text: str) -> float:
    """Return the number of seconds ``text`` stands for.

    Units are ``ms``, ``s``, ``m``, ``h``, ``d`` and ``w``; they combine largest first
    (``"1h30m"``). Raises :class:`ValueError` with a message for the operator.
    """
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"{_DURATION_EXAMPLE}, got {text!r}")
    if isinstance(text, int | float) or _DIGITS.fullmatch(text):
        raise ValueError(
            f"{_DURATION_EXAMPLE}, got {text!r} (a number without a unit is ambiguous:"
            ' add a unit such as "s" or "m")'
        )
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"{_DURATION_EXAMPLE}, got {text!r}")
    milliseconds = sum(
        int(count) * _DURATION_UNITS_MS[unit]
        for unit, count in match.groupdict().items()
        if count is not None
    )
    return milliseconds / 1000


def parse_size(text: str | int) -> int:
    """Return the number of bytes ``text`` stands for.

    An integer is a number of bytes. A string is a number and a unit, ``B``, ``KB``, ``MB``,
    ``GB`` (powers of 1024) or ``KiB``, ``MiB``, ``GiB``, in any letter case; a fraction is
    allowed when it comes to whole bytes (``"1.5MB"``). Raises :class:`ValueError` with a
    message for the operator.
    """
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f"{_SIZE_EXAMPLE}, got {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"{_SIZE_EXAMPLE}, got {text!r} (a size cannot be negative)")
        return text
    if _DIGITS.fullmatch(text):
        raise ValueError(f'{_SIZE_EXAMPLE}, got {text!r} (give a unit: "{text}B" for bytes)')
    match = _SIZE.fullmatch(text)
    if match is None or match["unit"].lower() not in _SIZE_UNITS:
        raise ValueError(f"{_SIZE_EXAMPLE}, got {text!r}")
    size = Fraction(match["number"]) * _SIZE_UNITS[match["unit"].lower()]
    if size.denominator != 1:
        raise ValueError(f"{_SIZE_EXAMPLE}, got {text!r} (not a whole number of bytes)")
    return int(size)
