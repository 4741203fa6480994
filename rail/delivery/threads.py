"""The signing threads: a cheap hand-off to a few daemon threads, never joined.

Every outbound message is signed in one of these threads (:mod:`rail.delivery.preparing`
decides how many at once and for how long). A call is one queue put on the reactor
thread and one ``callFromThread`` back, as in :class:`rail.inbound.workers.Workers`; in
``bench/deliver.py`` runs, Twisted's ``ThreadPool`` cost about twice as much extra CPU
per message as this hand-off. Unlike those workers, a signing thread may be stuck in a
prepare that overran its budget, which nothing can interrupt: :meth:`SigningThreads.stop`
asks each thread to end after its current call and does not wait, and the threads are
daemons, so a stuck one cannot hold up shutdown.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.python.failure import Failure

__all__ = ["SigningThreads"]

_Call = tuple[Deferred[Any], Callable[[], Any]]


class SigningThreads:
    """``threads(f)`` runs ``f()`` in one of ``count`` threads; the Deferred fires on the
    reactor. Calls made before :meth:`start` or after :meth:`stop` fail at once with
    ``CancelledError``: not run, which the scheduler treats as a shutdown (the job stays
    queued), never as a poison message."""

    def __init__(self, reactor: Any, count: int, name: str = "rail-sign") -> None:
        self._reactor = reactor
        self._count = count
        self._name = name
        self._queue: SimpleQueue[_Call | None] = SimpleQueue()
        self._running = False

    def start(self) -> None:
        if self._running:
            return
        self._running = True
        for n in range(self._count):
            threading.Thread(target=self._work, name=f"{self._name}-{n}", daemon=True).start()

    def stop(self) -> None:
        """Each thread ends after the call it is running (if any); nothing waits for it."""
        if not self._running:
            return
        self._running = False
        for _ in range(self._count):
            self._queue.put(None)

    def __call__(self, function: Callable[[], Any]) -> Deferred[Any]:
        if not self._running:
            return fail(CancelledError("the signing threads are not running"))
        done: Deferred[Any] = Deferred()
        self._queue.put((done, function))
        return done

    def _work(self) -> None:
        call = self._reactor.callFromThread
        while True:
            job = self._queue.get()
            if job is None:
                return
            done, function = job
            try:
                result = function()
            except BaseException:
                call(done.errback, Failure())  # type: ignore[no-untyped-call, unused-ignore]
            else:
                call(done.callback, result)
