"""A stand-in for ``deferToThreadPool`` that runs nothing until the test says so.

Code that must keep file, SQLite and key work off the reactor thread takes an
``in_thread(f)`` callable; with :class:`FakeThreads` a test sees that the work was handed
over rather than done at once, and decides when each piece of it "finishes".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer

__all__ = ["FakeThreads"]


class FakeThreads:
    """``in_thread`` whose work waits in :attr:`queued` until :meth:`finish`."""

    def __init__(self) -> None:
        self.queued: list[tuple[Callable[[], Any], defer.Deferred[Any]]] = []

    def __call__(self, work: Callable[[], Any]) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.queued.append((work, d))
        return d

    def finish(self) -> None:
        """Run the oldest queued work now and fire its Deferred with the outcome."""
        work, d = self.queued.pop(0)
        try:
            result = work()
        except Exception as e:
            d.errback(e)
        else:
            d.callback(result)

    def finish_all(self) -> None:
        """Run queued work, including work queued meanwhile, until none is left."""
        while self.queued:
            self.finish()
