"""Keeps a running server's event subscriptions in step with the registry, off the reactor.

``rail clients events`` and ``rail certs issue --events`` are other processes writing the
registry's ``client_events`` table (:mod:`rail.pki.clientevents`). :class:`EventWatch`
looks every ``interval`` seconds (default 1) in a worker thread: a ``stat`` of the
registry and its write-ahead log, and only when either changed (or on demand: SIGHUP, an
admin's change) a read of the table; it hands a changed value to ``install`` on the
reactor thread (the service swaps it into the store's writer: a reference swap). No
connection is kept between reads, so the watch never holds a lock other processes wait
for. The admin API reads and writes the same settings through it, and answers a change
once it is installed.
"""

from __future__ import annotations

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
from rail.pki.registry import RegistryError
from rail.pki.source import FileSource, RegistrySource
from rail.refresher import Refresher

__all__ = ["DEFAULT_INTERVAL", "EventWatch"]

_log = Logger()

DEFAULT_INTERVAL = 1.0
"""Seconds between reads of the settings: the most a change waits to take effect."""

InThread = Callable[[Callable[[], Any]], "defer.Deferred[Any]"]


class EventWatch(Service):
    """The ``event-subscriptions`` service.

    ``path`` is where the registry is (a :class:`RegistrySource`, or the registry file
    under a data directory); ``install(subscriptions)`` puts a new value in use;
    ``in_thread(f)`` runs ``f`` off the reactor thread; ``now()`` is the time as a
    datetime; ``allow_http_loopback()`` whether an ``http://`` loopback URL is allowed
    (``webhooks.allow_http_loopback`` and ``allow_private``, as they are now).
    """

    name = "event-subscriptions"

    def __init__(
        self,
        path: Path | RegistrySource,
        install: Callable[[Subscriptions], object],
        *,
        clock: IReactorTime,
        in_thread: InThread,
        now: Callable[[], datetime],
        allow_http_loopback: Callable[[], bool],
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self._source: RegistrySource = FileSource(path.parent) if isinstance(path, Path) else path
        self._install = install
        self._in_thread = in_thread
        self._now = now
        self._allow_http_loopback = allow_http_loopback
        self._seen: object = None  # the files' state at the last read
        self._force = False
        self.current: Subscriptions = NO_SUBSCRIPTIONS
        self._refresher = Refresher(
            self._look,
            clock=clock,
            interval=interval,
            what="reading the event subscriptions (the loaded ones are kept)",
        )

    def load(self) -> None:
        """Read synchronously: at start-up only, before the reactor runs, so the first
        message accepted already finds its client's subscriptions. A registry that
        cannot be read (locked, or a full disk) does not stop the start: it is logged,
        and the first look after the start reads it again."""
        try:
            found = self._read(force=True)
        except RegistryError as error:
            _log.error(
                "cannot read the event subscriptions at start ({error}): no events are"
                " stored until they can be read",
                error=str(error),
            )
            return
        if found is not None:
            self._apply(found)

    # Service's own start/stop only flip ``running``; set here directly because they are
    # untyped (mypy --strict).
    def startService(self) -> None:
        self.running = True
        self._refresher.start()

    def stopService(self) -> defer.Deferred[None]:
        """Stop looking; fires once a look in progress has finished."""
        self.running = False
        return self._refresher.stop()

    def refresh(self) -> defer.Deferred[None]:
        """Read now, whether or not the files look changed; fires once a read that
        started after this call has been applied."""
        self._force = True
        return self._refresher.refresh()

    def settings(self, name: str) -> defer.Deferred[ClientEvents]:
        """Client ``name``'s settings; fails with :class:`RegistryError` if it has no
        client certificate (:class:`~rail.pki.registry.UnknownClientError`) or the
        registry cannot be read."""

        def read() -> ClientEvents:
            with self._source.open() as registry:
                return registry.events_of(name)

        return self._in_thread(read)

    def change(
        self, name: str, types: Iterable[str], url: str | None
    ) -> defer.Deferred[ClientEvents]:
        """Store new settings for ``name`` (see :meth:`Registry.set_events`, labels named
        after the API's JSON fields) and fire with them once they are in use."""
        now = self._now()
        allow = self._allow_http_loopback()
        chosen = list(types)

        def write() -> ClientEvents:
            with self._source.open() as registry:
                return registry.set_events(
                    name, chosen, url, now, allow_http_loopback=allow, labels=("types", "url")
                )

        written: defer.Deferred[ClientEvents] = self._in_thread(write)

        def installed(settings: ClientEvents) -> defer.Deferred[ClientEvents]:
            return self.refresh().addCallback(lambda _: settings)

        return written.addCallback(installed)

    def _read(self, force: bool) -> Subscriptions | None:
        """The subscriptions, or None when the files did not change since the last read
        (in a worker thread, or at start-up)."""
        state = self._source.state("client_events")
        if state == self._seen and not force:
            return None
        if not self._source.exists():
            found = NO_SUBSCRIPTIONS  # no client yet, and reading must not create the file
        else:
            with self._source.open() as registry:
                found = subscriptions_from(registry.all_events())
        self._seen = state
        return found

    def _look(self) -> defer.Deferred[Any]:
        force, self._force = self._force, False
        reading: defer.Deferred[Any] = self._in_thread(lambda: self._read(force))
        return reading.addCallbacks(self._found, self._failed)

    def _found(self, found: Subscriptions | None) -> None:
        if found is not None:
            self._apply(found)

    def _failed(self, failure: Any) -> None:
        failure.trap(RegistryError)
        self._seen = None  # read again next time
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
