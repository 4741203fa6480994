"""Keeps a running server's event subscriptions in step with the registry, off the reactor.

``rail clients events`` and ``rail certs issue --events`` are other processes writing the
registry's ``client_events`` table (:mod:`rail.pki.clientevents`). :class:`EventWatch`
reads it every ``interval`` seconds (default 1) in a worker thread, on a registry
connection it keeps, and hands a changed value to ``install`` on the reactor thread (the
service swaps it into the store's writer: a reference swap). The admin API reads and
writes the same settings through it, and answers a change once it is installed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rail.events.subscriptions import NO_SUBSCRIPTIONS, Subscriptions
from rail.pki.clientevents import ClientEvents, subscriptions_from
from rail.pki.registry import Registry, RegistryError
from rail.refresher import Refresher

__all__ = ["DEFAULT_INTERVAL", "EventWatch"]

_log = Logger()

DEFAULT_INTERVAL = 1.0
"""Seconds between reads of the settings: the most a change waits to take effect."""

InThread = Callable[[Callable[[], Any]], "defer.Deferred[Any]"]


class EventWatch(Service):
    """The ``event-subscriptions`` service.

    ``path`` is the registry file; ``install(subscriptions)`` puts a new value in use;
    ``in_thread(f)`` runs ``f`` off the reactor thread; ``now()`` is the time as a
    datetime; ``allow_http_loopback()`` whether an ``http://`` loopback URL is allowed
    (``webhooks.allow_http_loopback`` and ``allow_private``, as they are now).
    """

    name = "event-subscriptions"

    def __init__(
        self,
        path: Path,
        install: Callable[[Subscriptions], object],
        *,
        clock: IReactorTime,
        in_thread: InThread,
        now: Callable[[], datetime],
        allow_http_loopback: Callable[[], bool],
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self._path = path
        self._install = install
        self._in_thread = in_thread
        self._now = now
        self._allow_http_loopback = allow_http_loopback
        self._registry: Registry | None = None
        self._opening = threading.Lock()
        self.current: Subscriptions = NO_SUBSCRIPTIONS
        self._refresher = Refresher(
            self._look,
            clock=clock,
            interval=interval,
            what="reading the event subscriptions (the loaded ones are kept)",
        )

    def load(self) -> None:
        """Read synchronously: at start-up only, before the reactor runs, so the first
        message accepted already finds its client's subscriptions. Errors propagate."""
        self._apply(self._read())

    # Service's own start/stop only flip ``running``; set here directly because they are
    # untyped (mypy --strict).
    def startService(self) -> None:
        self.running = True
        self._refresher.start()

    def stopService(self) -> defer.Deferred[None]:
        """Stop reading; fires once a read in progress has finished (the registry
        connection is closed then, in a thread)."""
        self.running = False
        stopped = self._refresher.stop()

        def close(_: object) -> defer.Deferred[None]:
            registry, self._registry = self._registry, None
            if registry is None:
                return defer.succeed(None)
            return self._in_thread(registry.close)

        return stopped.addCallback(close)

    def refresh(self) -> defer.Deferred[None]:
        """Read now; fires once a read that started after this call has been applied."""
        return self._refresher.refresh()

    def settings(self, name: str) -> defer.Deferred[ClientEvents]:
        """Client ``name``'s settings; fails with :class:`RegistryError` if it has no
        client certificate."""
        return self._in_thread(lambda: self._open().events_of(name))

    def change(
        self, name: str, types: Iterable[str], url: str | None
    ) -> defer.Deferred[ClientEvents]:
        """Store new settings for ``name`` (see :meth:`Registry.set_events`, labels named
        after the API's JSON fields) and fire with them once they are in use."""
        now = self._now()
        allow = self._allow_http_loopback()
        chosen = list(types)

        def write() -> ClientEvents:
            return self._open().set_events(
                name, chosen, url, now, allow_http_loopback=allow, labels=("types", "url")
            )

        written: defer.Deferred[ClientEvents] = self._in_thread(write)

        def installed(settings: ClientEvents) -> defer.Deferred[ClientEvents]:
            return self.refresh().addCallback(lambda _: settings)

        return written.addCallback(installed)

    def _open(self) -> Registry:
        """The registry connection kept for these reads (in a worker thread)."""
        with self._opening:
            if self._registry is None:
                self._registry = Registry.open(self._path)
            return self._registry

    def _read(self) -> Subscriptions:
        if self._registry is None and not self._path.exists():
            return NO_SUBSCRIPTIONS  # no client yet, and reading must not create the file
        return subscriptions_from(self._open().all_events())

    def _look(self) -> defer.Deferred[Any]:
        reading: defer.Deferred[Any] = self._in_thread(self._read)
        return reading.addCallbacks(self._apply, self._failed)

    def _failed(self, failure: Any) -> None:
        failure.trap(RegistryError)
        _log.warn(
            "cannot read the event subscriptions ({error}); the loaded ones are kept",
            error=failure.getErrorMessage(),
        )

    def _apply(self, subscriptions: Subscriptions) -> None:
        if subscriptions == self.current:
            return
        self.current = subscriptions
        self._install(subscriptions)
        _log.info(
            "event subscriptions loaded: {count} client(s)",
            count=len(subscriptions.by_client),
        )
