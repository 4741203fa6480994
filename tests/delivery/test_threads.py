"""SigningThreads with real threads on the real reactor: results, errors, start and stop."""

from __future__ import annotations

import threading

from twisted.internet import reactor
from twisted.internet.defer import CancelledError
from twisted.trial.unittest import TestCase

from rail.delivery.threads import SigningThreads


class SigningThreadsTests(TestCase):
    async def test_runs_off_the_reactor_thread(self) -> None:
        """A call runs in a signing thread (not the caller's) and its result, or its
        error, comes back through the Deferred."""
        threads = SigningThreads(reactor, 2)
        threads.start()
        self.addCleanup(threads.stop)
        name = await threads(lambda: threading.current_thread().name)
        self.assertTrue(name.startswith("rail-sign-"), name)

        def broken() -> bytes:
            raise ValueError("bad header")

        with self.assertRaises(ValueError):
            await threads(broken)

    def test_refuses_when_not_running(self) -> None:
        """Before start and after stop a call fails at once with CancelledError (nothing
        would answer it; the scheduler leaves such a job queued)."""
        threads = SigningThreads(reactor, 1)
        self.failureResultOf(threads(lambda: b""), CancelledError)
        threads.start()
        threads.stop()
        self.failureResultOf(threads(lambda: b""), CancelledError)
