"""Times as Rail shows them to people and apps: RFC 3339, UTC, to the second.

One spelling everywhere (API answers, event and webhook payloads, log lines, reports), so
an app can compare what different parts of Rail say about one message. Pure.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["rfc3339", "rfc3339_or_none"]


def rfc3339(when: float) -> str:
    """A POSIX time as ``2026-12-04T21:38:06Z``."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_or_none(when: float | None) -> str | None:
    """:func:`rfc3339`, or None for no time."""
    return None if when is None else rfc3339(when)
