"""The memory all SMTP sessions together may hold as message data.

Each session buffers its DATA in memory until the end of the message, bounded per message
by ``limits.message_size``; this bounds the sum (``limits.data_memory``), so many large
messages at once cannot exhaust Rail's memory. A session that cannot get more answers
``452 4.3.1`` (the sender tries again later) instead of buffering: refusing costs the
sender a retry, running out of memory would cost everyone their mail.
"""

from __future__ import annotations

__all__ = ["COPIES", "DataBudget"]

COPIES = 4
"""How many times its size a message is charged, an upper bound on what it costs in
memory at its peak: its buffer while it is received; at the end of DATA the immutable
copy handed to the session (made while the buffer still exists); while it is checked and
stored, the copy with Rail's header fields (Received, and Authentication-Results on port
25; the completed message on port 465) and SQLite's copy of the value it writes.
Charging it from the first byte means a message that could be received can also be
checked and stored: none is refused for memory after its last byte."""


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
