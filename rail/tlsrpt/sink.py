"""The TLS-RPT :class:`~rail.delivery.tlsreport.TLSOutcomeSink`: counts outcomes, durably.

Delivery calls :meth:`CountingSink.record` on the reactor thread once per session; that
only adds one to an in-memory counter keyed like a row of the queue's ``tls_outcomes``
table (UTC day, policy domain, policy, result type, and for failures MX host and
address). Every ``interval`` seconds, when ``max_keys`` keys are waiting, and at stop,
the counters go to the store's writer thread in one operation (added to the rows, which
are bounded by the variety of outcomes, not their number). A crash loses at most one
interval's counts, which only makes one report smaller: an acceptable price for not
writing once per session. A failed write puts the counts back and is retried with the
next flush.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.delivery.tlsreport import TLSOutcome
from rail.tlsrpt.report import day_of

__all__ = ["FLUSH_INTERVAL", "MAX_KEYS", "CountingSink", "ITLSCounterStore"]

_log = Logger()

FLUSH_INTERVAL = 60.0
"""Seconds between writes of the counters."""
MAX_KEYS = 10_000
"""Distinct counters held in memory before they are written early."""

_Key = tuple[str, str, str, tuple[str, ...], str, str, str]


class ITLSCounterStore(Protocol):
    """What the sink needs of the store (:class:`rail.store.tlsreports.SQLiteTLSReports`)."""

    def add_tls_counts(self, counts: Any) -> Deferred[None]: ...


class CountingSink:
    """See the module docstring. :meth:`start` and :meth:`stop` bracket its life."""

    def __init__(
        self,
        store: ITLSCounterStore,
        clock: IReactorTime,
        *,
        interval: float = FLUSH_INTERVAL,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._store = store
        self._clock = clock
        self._interval = interval
        self._max_keys = max_keys
        self._pending: dict[_Key, list[Any]] = {}
        self._writing: Deferred[None] | None = None
        self._loop = LoopingCall(self.flush)
        self._loop.clock = clock

    def record(self, outcome: TLSOutcome) -> None:
        """Count ``outcome`` (cheap: a dictionary update)."""
        failed = not outcome.succeeded
        key: _Key = (
            day_of(self._clock.seconds()),
            outcome.policy_domain.lower().rstrip("."),
            outcome.policy_type,
            tuple(outcome.policy_strings),
            outcome.result,
            (outcome.mx_host or "").lower().rstrip(".") if failed else "",
            (outcome.receiving_ip or "") if failed else "",
        )
        entry = self._pending.get(key)
        if entry is None:
            self._pending[key] = [1, outcome.failure_reason]
        else:
            entry[0] += 1
            if outcome.failure_reason:
                entry[1] = outcome.failure_reason
        if len(self._pending) >= self._max_keys:
            self.flush()

    @property
    def pending(self) -> int:
        """Counters not yet written."""
        return len(self._pending)

    def start(self) -> None:
        self._loop.start(self._interval, now=False)

    def stop(self) -> Deferred[None]:
        """Stop the timer and write what is left (fires once it is written, or failed)."""
        if self._loop.running:
            self._loop.stop()
        return self.flush()

    def flush(self) -> Deferred[None]:
        """Write the waiting counters in one store operation; fires when written. One
        write at a time: a flush during a write waits for it, then writes the rest."""
        if self._writing is not None:
            previous = self._writing
            done: Deferred[None] = Deferred()
            previous.addBoth(lambda _: self.flush().chainDeferred(done))
            return done
        if not self._pending:
            return succeed(None)
        batch, self._pending = self._pending, {}
        counts = [(*key, count, reason) for key, (count, reason) in batch.items()]
        writing = self._store.add_tls_counts(counts)
        self._writing = writing
        result: Deferred[None] = Deferred()

        def written(outcome: object) -> None:
            self._writing = None
            if isinstance(outcome, Failure):
                _log.error(
                    "cannot record {count} TLS-RPT counters: {error}; trying again later",
                    count=len(counts),
                    error=outcome.getErrorMessage(),
                )
                for key, (count, reason) in batch.items():
                    entry = self._pending.setdefault(key, [0, reason])
                    entry[0] += count
            result.callback(None)

        writing.addBoth(written)
        return result
