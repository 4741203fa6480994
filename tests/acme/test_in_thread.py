"""in_thread: orders run in the thread pool; cancelling asks them to stop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError
from twisted.trial.unittest import SynchronousTestCase

from rail.acme.service import in_thread


class _Pool:
    """A thread pool whose jobs run when the test says so, on the test's thread."""

    def __init__(self) -> None:
        self.jobs: list[Callable[[], None]] = []

    def callInThreadWithCallback(
        self, on_result: Callable[[bool, Any], None], function: Callable[..., Any], *args: Any
    ) -> None:
        def job() -> None:
            try:
                result = function(*args)
            except Exception as e:
                on_result(False, e)
            else:
                on_result(True, result)

        self.jobs.append(job)


class _Reactor:
    def __init__(self) -> None:
        self.pool = _Pool()

    def getThreadPool(self) -> _Pool:
        return self.pool

    def callFromThread(self, function: Callable[..., Any], *args: Any) -> None:
        function(*args)


class InThreadTests(SynchronousTestCase):
    def test_result_relayed(self) -> None:
        """The function's result fires the Deferred; it gets an unset stop event."""
        reactor = _Reactor()
        seen: list[bool] = []

        def work(stop: threading.Event) -> str:
            seen.append(stop.is_set())
            return "done"

        ordered = in_thread(reactor, work)
        self.assertNoResult(ordered)
        reactor.pool.jobs.pop()()
        self.assertEqual(self.successResultOf(ordered), "done")
        self.assertEqual(seen, [False])

    def test_error_relayed(self) -> None:
        """An exception in the thread fails the Deferred with it."""
        reactor = _Reactor()

        def work(stop: threading.Event) -> str:
            raise RuntimeError("CA down")

        ordered = in_thread(reactor, work)
        reactor.pool.jobs.pop()()
        self.failureResultOf(ordered, RuntimeError)

    def test_cancel_sets_stop_and_drops_late_result(self) -> None:
        """Cancelling fails the Deferred at once and sets the stop event; whatever the
        thread returns afterwards is dropped without an unhandled error."""
        reactor = _Reactor()
        seen: list[bool] = []

        def work(stop: threading.Event) -> str:
            seen.append(stop.is_set())
            raise RuntimeError("stopped late")

        ordered = in_thread(reactor, work)
        ordered.cancel()
        self.failureResultOf(ordered, CancelledError)
        reactor.pool.jobs.pop()()
        self.assertEqual(seen, [True])
        self.assertEqual(self.flushLoggedErrors(), [])
