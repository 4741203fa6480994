"""Per-client sending rates: messages per minute, hour and day, recipients per day.

A leaked client certificate must not be able to send without limit, and one busy app must
not take a whole relay's reputation with it. Each client has four counters, each a sliding
window made of a fixed number of buckets (a minute of 12 five-second buckets, an hour of
60 one-minute buckets, a day of 96 quarter-hours): counting a message is O(1), memory per
client is bounded, and the window moves in steps of one bucket. A refusal says when the
oldest buckets that hold the window over its limit leave it (``retry_after``), which the
API sends as ``Retry-After`` and SMTP names in its reply text.

Counts are in memory, on the reactor thread; :meth:`ClientRates.seed` adds what the store
holds of the last day at start-up (see docs/limits.md for exactly what a restart keeps).
A message is counted when the store has accepted it: sessions checked at the same moment
may together pass a limit by the messages they had in flight. With a shared database the
other nodes' acceptances arrive about once a second as running totals per client, bucket
and node, and :meth:`ClientRates.merge_others` adds what each total grew by since it was
last seen.

Pure: the clock is passed in, nothing here does I/O.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

import attrs

from rail.config.schema import ClientLimits

__all__ = ["WINDOWS", "ClientRates", "Limited"]


class _Clock(Protocol):
    def seconds(self) -> float: ...


WINDOWS = {
    "messages_per_minute": (60.0, 12),
    "messages_per_hour": (3600.0, 60),
    "messages_per_day": (86400.0, 96),
    "recipients_per_day": (86400.0, 96),
}
"""Each limit's window length in seconds, and the buckets it is counted in."""


@attrs.frozen
class Limited:
    """A refusal: which limit, and whole seconds until the window has room again."""

    limit: str
    retry_after: int

    @property
    def text(self) -> str:
        """The reply text shared by SMTP and the API."""
        noun = "recipient" if self.limit.startswith("recipients") else "message"
        return f"{noun} rate limit ({self.limit}) reached; try again in {self.retry_after}s"


class _Window:
    """Counts over the last ``buckets`` buckets of ``width`` seconds (the current bucket
    included): a deque of ``[bucket number, count]``, oldest first."""

    __slots__ = ("_buckets", "_counts", "_width", "total")

    def __init__(self, length: float, buckets: int) -> None:
        self._width = length / buckets
        self._buckets = buckets
        self._counts: deque[list[int]] = deque()
        self.total = 0

    def _expire(self, now: float) -> None:
        oldest = math.floor(now / self._width) - self._buckets + 1
        counts = self._counts
        while counts and counts[0][0] < oldest:
            self.total -= counts.popleft()[1]

    def count(self, now: float) -> int:
        self._expire(now)
        return self.total

    def add(self, now: float, amount: int) -> None:
        self._expire(now)
        bucket = math.floor(now / self._width)
        counts = self._counts
        if counts and counts[-1][0] == bucket:
            counts[-1][1] += amount
        elif not counts or counts[-1][0] < bucket:
            counts.append([bucket, amount])
        else:  # an older time (seeding): keep the buckets in order
            self._insert(bucket, amount)
        self.total += amount

    def _insert(self, bucket: int, amount: int) -> None:
        counts = self._counts
        for position, (number, _) in enumerate(counts):
            if number == bucket:
                counts[position][1] += amount
                return
            if number > bucket:
                counts.insert(position, [bucket, amount])
                return
        counts.append([bucket, amount])

    def take_back(self, at: float, amount: int) -> None:
        """Undo an :meth:`add` of ``amount`` at ``at``, as far as its bucket is still
        counted (a bucket the window has left counts for nothing already)."""
        bucket = math.floor(at / self._width)
        for entry in self._counts:
            if entry[0] == bucket:
                taken = min(entry[1], amount)
                entry[1] -= taken
                self.total -= taken
                return

    def retry_after(self, now: float, amount: int, limit: int) -> int:
        """Seconds until ``amount`` more fits under ``limit`` (a whole window if never:
        more than the limit at once)."""
        self._expire(now)
        if amount > limit:
            return math.ceil(self._width * self._buckets)
        excess = self.total + amount - limit
        for number, count in self._counts:
            excess -= count
            if excess <= 0:
                leaves = (number + self._buckets) * self._width
                return max(1, math.ceil(leaves - now))
        return 1


class _Usage:
    __slots__ = ("windows",)

    def __init__(self) -> None:
        self.windows = {name: _Window(*shape) for name, shape in WINDOWS.items()}


class ClientRates:
    """The counters of every client that sent, and the verdicts on their next message.

    ``limits(client)`` returns the :class:`ClientLimits` in force (it follows SIGHUP by
    being replaced: :meth:`reconfigure`).
    """

    def __init__(self, clock: _Clock, limits: Callable[[str], ClientLimits]) -> None:
        self._clock = clock
        self._limits = limits
        self._usage: dict[str, _Usage] = {}
        # The other nodes' totals merged so far, per (client, bucket, node), of the buckets
        # a poll may still read again.
        self._merged: dict[tuple[str, float, str], tuple[int, int]] = {}

    def reconfigure(self, limits: Callable[[str], ClientLimits]) -> None:
        """New limits (SIGHUP); the counts so far stay."""
        self._limits = limits

    def check_message(self, client: str, recipients: int = 0) -> Limited | None:
        """Whether one more message (with ``recipients`` recipients, if already known) from
        ``client`` would pass a limit: the API asks before it stores a message, SMTP at
        MAIL FROM (recipients not yet known, so 0)."""
        limits = self._limits(client)
        checks = [
            ("messages_per_minute", limits.messages_per_minute, 1),
            ("messages_per_hour", limits.messages_per_hour, 1),
            ("messages_per_day", limits.messages_per_day, 1),
        ]
        if recipients:
            checks.append(("recipients_per_day", limits.recipients_per_day, recipients))
        return self._check(client, checks)

    def check_recipients(self, client: str, recipients: int) -> Limited | None:
        """Whether a message to ``recipients`` recipients would pass the client's
        recipients per day: SMTP asks at each RCPT TO with the count including it."""
        limit = self._limits(client).recipients_per_day
        return self._check(client, [("recipients_per_day", limit, recipients)])

    def _check(self, client: str, checks: list[tuple[str, int | None, int]]) -> Limited | None:
        usage = self._usage.get(client)
        now = self._clock.seconds()
        for name, limit, amount in checks:
            if limit is None:
                continue
            window = usage.windows[name] if usage is not None else None
            used = window.count(now) if window is not None else 0
            if used + amount > limit:
                if window is None:
                    return Limited(name, math.ceil(WINDOWS[name][0]))
                return Limited(name, window.retry_after(now, amount, limit))
        return None

    def record(self, client: str, recipients: int, at: float | None = None) -> None:
        """Count one accepted message of ``client`` with ``recipients`` recipients."""
        usage = self._usage.get(client)
        if usage is None:
            usage = self._usage[client] = _Usage()
        now = self._clock.seconds() if at is None else at
        windows = usage.windows
        windows["messages_per_minute"].add(now, 1)
        windows["messages_per_hour"].add(now, 1)
        windows["messages_per_day"].add(now, 1)
        windows["recipients_per_day"].add(now, recipients)

    def forget(self, client: str, recipients: int, at: float) -> None:
        """Take back a message :meth:`record` counted at ``at`` that the store did not
        accept after all (the batch API counts each item before storing the batch, so
        that the items after it see it)."""
        usage = self._usage.get(client)
        if usage is None:
            return
        for name, window in usage.windows.items():
            window.take_back(at, recipients if name == "recipients_per_day" else 1)

    def seed(self, rows: Iterable[tuple[str, float, int, int]]) -> None:
        """Add what the store holds: ``(client, time, messages, recipients)`` rows (one per
        client and minute at start-up); rows older than a day count for nothing."""
        now = self._clock.seconds()
        for client, at, messages, recipients in rows:
            if at <= now - WINDOWS["messages_per_day"][0]:
                continue
            usage = self._usage.get(client)
            if usage is None:
                usage = self._usage[client] = _Usage()
            for name, window in usage.windows.items():
                window.add(at, recipients if name == "recipients_per_day" else messages)

    def merge_others(self, rows: Iterable[tuple[str, float, str, int, int]], since: float) -> int:
        """Add the other nodes' acceptances: ``(client, bucket, node, messages,
        recipients)`` rows are each node's running totals of every bucket from ``since``
        on; each row adds what it grew by since it was last merged (a row read again
        unchanged adds nothing). Totals of buckets before ``since`` are forgotten: the next
        poll no longer reads them. Returns the messages added."""
        merged = self._merged
        for key in [key for key in merged if key[1] < since]:
            del merged[key]
        now = self._clock.seconds()
        horizon = now - WINDOWS["messages_per_day"][0]
        added = 0
        for client, bucket, node, messages, recipients in rows:
            if bucket <= horizon:
                continue
            key = (client, bucket, node)
            had_messages, had_recipients = merged.get(key, (0, 0))
            merged[key] = (max(messages, had_messages), max(recipients, had_recipients))
            more_messages = max(0, messages - had_messages)
            more_recipients = max(0, recipients - had_recipients)
            if not (more_messages or more_recipients):
                continue
            usage = self._usage.get(client)
            if usage is None:
                usage = self._usage[client] = _Usage()
            for name, window in usage.windows.items():
                amount = more_recipients if name == "recipients_per_day" else more_messages
                if amount:
                    # A node whose clock runs ahead writes future buckets: count them now
                    # (adding at a later time would expire this node's recent buckets).
                    window.add(min(bucket, now), amount)
            added += more_messages
        return added
