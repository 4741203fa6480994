"""The memory all SMTP sessions together may hold as message data.

Each session buffers its DATA in memory until the end of the message, bounded per message
by ``limits.message_size``; this bounds the sum (``limits.data_memory``), so many large
messages at once cannot exhaust Rail's memory. A session that cannot get more answers
``452 4.3.1`` (the sender tries again later) instead of buffering: refusing costs the
sender a retry, running out of memory would cost everyone their mail.
"""

from __future__ import annotations

__all__ = ["DataBudget"]


class DataBudget:
    """Bytes handed out to sessions and given back; never more than ``capacity`` at once."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0

    @property
    def available(self) -> int:
        return self.capacity - self.used

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes if that many are free; whether they were."""
        if size > self.capacity - self.used:
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        """Give back bytes taken by :meth:`reserve`."""
        self.used -= size
