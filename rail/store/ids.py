"""Message ids: ULIDs, so ids sort by acceptance time and need no coordination."""

from __future__ import annotations

from ulid import ULID

__all__ = ["id_time", "is_message_id", "new_message_id"]


def new_message_id(now: float) -> str:
    """A new ULID for a message accepted at ``now`` (seconds since the epoch, from the
    injected clock); 80 random bits make collisions within one millisecond negligible."""
    return str(ULID.from_timestamp(now))


def is_message_id(text: str) -> bool:
    """Whether ``text`` is a canonical ULID string (what ``GET /api/v1/messages/{id}``
    accepts), so malformed ids are refused before any lookup."""
    if len(text) != 26:
        return False
    try:
        return str(ULID.from_str(text)) == text
    except ValueError:
        return False


def id_time(message_id: str) -> float | None:
    """When ``message_id`` was made (its ULID time, to the millisecond), or None if it is
    not a ULID: how retention tells an id older than what it purged."""
    try:
        return float(ULID.from_str(message_id).timestamp)
    except ValueError:
        return None
