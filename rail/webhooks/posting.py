"""The POSTs of one kind of webhook job, each with its timeout on the runner's clock.

Shared by the inbound-mail dispatcher and the event dispatcher: a POST ends as an
:data:`Attempt` (the application's answer, ``timeout after 30s``, or a local error as
:class:`Unreachable`), or, once the grace period of a stop is over and :meth:`Posts.cut`
cancelled it, as None: its job is then left untouched in the store.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.webhooks.outcome import Attempt, Unreachable

__all__ = ["Post", "Posts"]

Post = Callable[[str, dict[str, str], bytes], Deferred[Attempt]]
"""``post(url, headers, body)``: one POST, as :meth:`WebhookClient.post` does it."""

_log = Logger()


class Posts:
    """Runs ``post(url, headers, body)`` calls, each cancelled after ``timeout`` seconds."""

    def __init__(self, clock: IReactorTime, post: Post, timeout: float, what: str) -> None:
        """``what``: the jobs in log lines (``webhook``, ``event``)."""
        self._clock = clock
        self._post = post
        self.timeout = timeout
        self._what = what
        self._running: set[Deferred[Attempt]] = set()
        self._cut = False

    def post(
        self, url: str, headers: dict[str, str], body: bytes, job_id: str
    ) -> Deferred[Attempt | None]:
        """POST ``body``; fires with the attempt, or None when cut (never fails)."""
        timeout = self.timeout
        try:
            posting = self._post(url, headers, body)
        except Exception:
            _log.failure("cannot start the {what} POST of {job_id}", what=self._what, job_id=job_id)
            return succeed(Unreachable("local error starting the POST"))
        timed_out = False

        def expire() -> None:
            nonlocal timed_out
            timed_out = True
            posting.cancel()

        timer = self._clock.callLater(timeout, expire)
        self._running.add(posting)

        def posted(outcome: Attempt | Failure) -> Attempt | None:
            if timer.active():
                timer.cancel()
            self._running.discard(posting)
            if self._cut:
                return None
            if timed_out:
                return Unreachable(f"timeout after {timeout:g}s")
            if isinstance(outcome, Failure):
                _log.failure(
                    "{what} POST of {job_id} failed", outcome, what=self._what, job_id=job_id
                )
                return Unreachable("local error during the POST")
            return outcome

        return posting.addBoth(posted)

    def cut(self) -> None:
        """Cancel every running POST: their outcome is None."""
        self._cut = True
        for posting in list(self._running):
            posting.cancel()
