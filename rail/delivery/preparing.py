"""DKIM preparation off the reactor thread: a bounded number at once, each within a budget.

Signing a message costs CPU in proportion to its size, and the first message from a new
domain creates that domain's keys (RSA generation, file writes, fsyncs). None of that may
run on the reactor thread, where it would stall every listener. :class:`Preparer` hands
each prepare to a thread (``run_in_thread``: :class:`rail.delivery.threads.SigningThreads`
in production), at most
``threads`` at once; the others wait their turn in order. Each gets ``budget`` seconds on
the clock from the moment its thread starts (waiting for a turn does not count).

A prepare that raises fails its Deferred with that error; one that overruns its budget
fails it with :class:`PrepareTimeoutError` at once. Either way the scheduler quarantines
the message. A thread cannot be stopped, so an overrunning prepare still holds a thread
until it returns (its result is then dropped); up to ``threads`` such overrunning threads
are tolerated *beside* the normal ones, so a few poison messages cannot stop the signing
of everything else. Only when more than ``threads`` are overrunning at once do new
prepares wait for one of them to end (so ``2 * threads`` threads are needed).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import partial

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from rail.store.model import DeliveryJob

__all__ = ["PrepareTimeoutError", "Preparer", "RunInThread", "inline"]

RunInThread = Callable[[Callable[[], bytes]], "Deferred[bytes]"]
"""``run_in_thread(f)``: call ``f()`` in a worker thread; the Deferred fires on the
reactor with its result or failure."""


class PrepareTimeoutError(Exception):
    """Preparing a message overran its budget."""

    def __init__(self, budget: float) -> None:
        super().__init__(f"preparing the message took over {budget:g}s")


@attrs.define(eq=False)
class _Call:
    job: DeliveryJob
    result: Deferred[bytes] | None = None
    timer: IDelayedCall | None = None
    started: bool = False
    abandoned: bool = False
    """Overran or cancelled while its thread runs: the thread's answer is dropped."""


class Preparer:
    """``preparer(job)`` fires with ``prepare(job)`` computed in a thread; see the
    module docstring. Cancelling the Deferred (the scheduler does at shutdown) drops a
    waiting call, or abandons a running one."""

    def __init__(
        self,
        prepare: Callable[[DeliveryJob], bytes],
        *,
        run_in_thread: RunInThread,
        clock: IReactorTime,
        budget: float,
        threads: int,
    ) -> None:
        self._prepare = prepare
        self._run_in_thread = run_in_thread
        self._clock = clock
        self._budget = budget
        self._threads = threads
        self._waiting: deque[_Call] = deque()
        self._starting = False
        self.running = 0
        """Prepares within their budget, in a thread now."""
        self.overrunning = 0
        """Threads still busy with a prepare that overran (or was cancelled)."""

    @property
    def waiting(self) -> int:
        """Prepares waiting for a thread."""
        return len(self._waiting)

    def __call__(self, job: DeliveryJob) -> Deferred[bytes]:
        call = _Call(job)
        call.result = Deferred(lambda _: self._cancel(call))
        self._waiting.append(call)
        self._start_waiting()
        return call.result

    def _start_waiting(self) -> None:
        """Start waiting calls while there is room. A call that finishes at once (its
        runner failed synchronously) comes back here: the running loop goes on instead,
        so a long queue never turns into deep recursion."""
        if self._starting:
            return
        self._starting = True
        try:
            while (
                self._waiting
                and self.running < self._threads
                and self.running + self.overrunning < 2 * self._threads
            ):
                call = self._waiting.popleft()
                call.started = True
                self.running += 1
                call.timer = self._clock.callLater(self._budget, self._overran, call)
                done = self._run_in_thread(partial(self._prepare, call.job))
                done.addBoth(self._finished, call)
        finally:
            self._starting = False

    def _finished(self, outcome: bytes | Failure, call: _Call) -> None:
        if call.abandoned:
            self.overrunning -= 1
            self._start_waiting()
            return
        self.running -= 1
        if call.timer is not None and call.timer.active():
            call.timer.cancel()
        self._start_waiting()
        result = call.result
        assert result is not None
        if isinstance(outcome, Failure):
            result.errback(outcome)
        else:
            result.callback(outcome)

    def _overran(self, call: _Call) -> None:
        call.timer = None
        self._abandon(call)
        result = call.result
        assert result is not None
        result.errback(PrepareTimeoutError(self._budget))

    def _abandon(self, call: _Call) -> None:
        call.abandoned = True
        self.running -= 1
        self.overrunning += 1
        self._start_waiting()

    def _cancel(self, call: _Call) -> None:
        if not call.started:
            self._waiting.remove(call)
            return
        if call.timer is not None and call.timer.active():
            call.timer.cancel()
        call.timer = None
        self._abandon(call)


def inline(prepare: Callable[[DeliveryJob], bytes]) -> Callable[[DeliveryJob], Deferred[bytes]]:
    """``prepare`` as the scheduler calls it, but run at once on the calling thread, with
    no budget: for tests that need no threads."""
    return lambda job: maybeDeferred(prepare, job)
