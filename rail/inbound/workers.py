"""A few threads for short, CPU-only work, with a cheaper hand-off than Twisted's pool.

Every inbound message's cache-only SPF/DKIM/DMARC check (:mod:`rail.inbound.verifier`)
goes through here. Twisted's ``ThreadPool`` coordinates its workers through a team of
lock-protected helpers: profiles of ``bench/inbound.py`` put ``deferToThreadPool`` at
about 5% of the reactor thread. Here a call is one queue put on the reactor and one
``callFromThread`` back. The threads never wait for anything but the queue, so there
are only :data:`THREADS` of them: each extra runnable thread makes the reactor wait
longer for the GIL after its system calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

__all__ = ["THREADS", "Workers"]

THREADS = 2
"""Enough to overlap one check's GIL-free moments (hashing, signature checks in OpenSSL)
with another's, few enough not to crowd the reactor thread."""

_T = TypeVar("_T")
_Job = tuple[Deferred[Any], Callable[..., Any], tuple[Any, ...]]


class Workers(Service):
    """Runs functions in its threads while the service runs."""

    def __init__(self, reactor: Any, threads: int = THREADS, name: str = "rail-worker") -> None:
        self._reactor = reactor
        self._count = threads
        self._name = name
        self._queue: SimpleQueue[_Job | None] = SimpleQueue()
        self._threads: list[threading.Thread] = []

    def run(self, function: Callable[..., _T], *args: Any, default: _T) -> Deferred[_T]:
        """``function(*args)`` in a worker thread; ``default`` at once when the service
        is not running (its threads are gone, nothing would answer)."""
        if not self.running:
            return succeed(default)
        done: Deferred[_T] = Deferred()
        self._queue.put((done, function, args))
        return done

    def startService(self) -> None:
        super().startService()
        self._threads = [
            threading.Thread(target=self._work, name=f"{self._name}-{n}", daemon=True)
            for n in range(self._count)
        ]
        for thread in self._threads:
            thread.start()

    def stopService(self) -> None:
        """Let the threads finish what was queued (short, CPU-only work), then end."""
        super().stopService()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _work(self) -> None:
        call = self._reactor.callFromThread
        while True:
            job = self._queue.get()
            if job is None:
                return
            done, function, args = job
            try:
                result = function(*args)
            except BaseException:
                call(done.errback, Failure())  # type: ignore[no-untyped-call, unused-ignore]
            else:
                call(done.callback, result)
