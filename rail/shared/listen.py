"""Other nodes' changes to the shared state, as they commit: PostgreSQL LISTEN/NOTIFY.

A node that revokes a certificate, changes a client's event subscriptions or rotates a
webhook secret sends a notification in the same transaction (:func:`rail.shared.schema.bump`);
PostgreSQL delivers it to every listening connection when, and only if, that transaction
commits. :class:`Notifications` keeps one connection LISTENing in a thread of its own (a
blocking wait on the socket, which the reactor must never do) and calls the handlers of the
notified topic on the reactor thread; each handler starts the same read its periodic watch
does, so a notification only makes that read happen now rather than within the second.
A lost connection is reopened (after ``retry`` seconds, doubling up to 30) and then every
handler runs, since what changed while nobody listened was not notified; the periodic reads
go on meanwhile, so a lost notification delays a change by at most their interval.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from rail.shared.schema import CHANNEL
from rail.store.db import DATABASE_ERRORS
from rail.store.pg import connect

__all__ = ["Notifications"]

_log = Logger()

_WAKE = 0.25
"""Seconds between looks at the stop flag while no notification comes."""


class Notifications(Service):
    """The ``shared-notifications`` service. ``call_from_thread`` is the reactor's."""

    name = "shared-notifications"

    def __init__(
        self,
        dsn: str,
        *,
        call_from_thread: Callable[..., None],
        retry: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._call = call_from_thread
        self._retry = retry
        self._handlers: dict[str, list[Callable[[], object]]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._alive = False
        self._waiters: list[defer.Deferred[None]] = []
        self.listening = threading.Event()
        """Set while the LISTEN connection is up (tests wait for it)."""

    def subscribe(self, topic: str, handler: Callable[[], object]) -> None:
        """Call ``handler()`` on the reactor thread when ``topic`` is notified."""
        self._handlers.setdefault(topic, []).append(handler)

    def startService(self) -> None:
        self.running = True
        self._stop.clear()
        self._alive = True
        self._thread = threading.Thread(target=self._run, name="rail-listen", daemon=True)
        self._thread.start()

    def stopService(self) -> defer.Deferred[None]:
        """Stop listening; fires once the thread has closed its connection."""
        self.running = False
        self._stop.set()
        if not self._alive:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(waiter)
        return waiter

    def _run(self) -> None:
        delay = self._retry
        first = True
        try:
            while not self._stop.is_set():
                try:
                    connection = connect(self._dsn, application_name="rail-listen")
                except DATABASE_ERRORS as error:
                    self._call(
                        _log.warn,
                        "shared database: cannot listen for changes"
                        " ({error}); retrying in {delay}s",
                        error=_line(error),
                        delay=delay,
                    )
                    self._stop.wait(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                try:
                    connection.raw.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    if not first:  # what changed while nobody listened
                        self._call(self._notified, None)
                    first = False
                    delay = self._retry
                    self._listen(connection)
                except DATABASE_ERRORS as error:
                    self._call(
                        _log.warn,
                        "shared database: lost the connection listening for"
                        " changes ({error}); reconnecting",
                        error=_line(error),
                    )
                finally:
                    self.listening.clear()
                    try:
                        connection.close()
                    except DATABASE_ERRORS:
                        pass
        finally:
            self._call(self._finished)

    def _listen(self, connection: Any) -> None:
        while not self._stop.is_set():
            for notify in connection.raw.notifies(timeout=_WAKE):
                self._call(self._notified, notify.payload)
                if self._stop.is_set():
                    return

    def _notified(self, topic: str | None) -> None:
        """On the reactor thread: run the handlers of ``topic`` (every one for None)."""
        if topic is None:
            handlers = [h for each in self._handlers.values() for h in each]
        else:
            handlers = list(self._handlers.get(topic, ()))
        for handler in handlers:
            try:
                handler()
            except Exception:
                _log.failure("handling a change of {topic} failed", topic=topic)

    def _finished(self) -> None:
        self._alive = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)


def _line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
