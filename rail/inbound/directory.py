"""The live :class:`~rail.inbound.recipients.RecipientTable` the port-25 sessions route by.

Local domains and exact addresses come from the certificate registry, which is SQLite and
changes under Rail's feet (``rail certs issue`` and ``revoke`` are other processes). The
registry is therefore read in a thread: every ``interval`` seconds (on the injected
clock) and whenever :meth:`Directory.refresh` is called (SIGHUP). Only the start-up load,
before the reactor runs, reads it synchronously. A failed read keeps the previous table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.config.schema import Config
from rail.inbound.recipients import RecipientTable, recipient_table, routing_problems
from rail.pki.registry import CertificateRecord

__all__ = ["Directory", "DirectoryService"]

_log = Logger()

ReadRecords = Callable[[datetime], Sequence[CertificateRecord]]
InThread = Callable[[Callable[[], Any]], "defer.Deferred[Any]"]


class Directory:
    """Holds the current recipient table and keeps it fresh.

    ``read_records(now)`` returns the registry's records (``Registry.valid_records``);
    ``in_thread(f)`` runs ``f`` off the reactor thread and returns a Deferred of its
    result (``lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f)``).
    """

    def __init__(
        self,
        config: Config,
        read_records: ReadRecords,
        *,
        clock: IReactorTime,
        in_thread: InThread,
        interval: float = 30.0,
    ) -> None:
        self._config = config
        self._read_records = read_records
        self._clock = clock
        self._in_thread = in_thread
        self._interval = interval
        self._records: tuple[CertificateRecord, ...] = ()
        self._table = recipient_table(config, (), self._now())
        self._problems: list[str] = []
        self._timer: IDelayedCall | None = None
        self._running: defer.Deferred[None] | None = None
        self._again: list[defer.Deferred[None]] = []
        self._stop_waiters: list[defer.Deferred[None]] = []
        self._periodic = False

    def current(self) -> RecipientTable:
        """The table to route by now (no I/O)."""
        return self._table

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.seconds(), UTC)

    def load(self) -> None:
        """Read the registry synchronously: at start-up only, before the reactor runs.
        Errors propagate, so a broken registry stops the start."""
        now = self._now()
        self._install(tuple(self._read_records(now)), now)

    def reconfigure(self, config: Config) -> None:
        """Use a reloaded configuration (routes, postmaster, local domains) at once, with
        the records last read."""
        self._config = config
        self._install(self._records, self._now())

    def start(self) -> None:
        """Refresh every ``interval`` seconds from now on."""
        self._periodic = True
        self._schedule()

    def stop(self) -> defer.Deferred[None]:
        """Stop refreshing; fires once a read in progress has finished."""
        self._periodic = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        running = self._running
        if running is None:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._stop_waiters.append(waiter)
        return waiter

    def refresh(self) -> defer.Deferred[None]:
        """Read the registry again now, in a thread. If a read is already running, one
        more follows it (it may have started before the change the caller knows of).
        Fires with None once a read started after this call has finished, whether or not
        it succeeded (failures are logged; the previous table stays)."""
        waiter: defer.Deferred[None] = defer.Deferred()
        self._again.append(waiter)
        if self._running is None:
            self._run()
        return waiter

    def _schedule(self) -> None:
        if not self._periodic:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._clock.callLater(self._interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._running is None:
            self._run()
        else:
            self._schedule()

    def _run(self) -> None:
        waiters, self._again = self._again, []
        now = self._now()
        read = self._read_records
        running: defer.Deferred[None] = self._in_thread(lambda: tuple(read(now)))
        running.addCallbacks(self._read, self._failed, callbackArgs=(now,))
        running.addErrback(self._bug)
        self._running = running
        running.addBoth(self._done, waiters)

    def _read(self, records: tuple[CertificateRecord, ...], now: datetime) -> None:
        self._install(records, now)

    def _failed(self, failure: Failure) -> None:
        _log.error(
            "cannot read the certificate registry; inbound routing keeps the previous table: {why}",
            why=failure.getErrorMessage(),
        )

    def _bug(self, failure: Failure) -> None:
        _log.failure("building the inbound recipient table failed", failure)

    def _done(self, result: object, waiters: list[defer.Deferred[None]]) -> None:
        self._running = None
        stopping, self._stop_waiters = self._stop_waiters, []
        for waiter in waiters + stopping:
            waiter.callback(None)
        if self._again:
            self._run()
        else:
            self._schedule()

    def _install(self, records: tuple[CertificateRecord, ...], now: datetime) -> None:
        table = recipient_table(self._config, records, now)
        self._records = records
        self._table = table
        problems = routing_problems(table)
        if problems != self._problems:
            for problem in problems:
                _log.warn("inbound routing: {problem}", problem=problem)
        self._problems = problems


class DirectoryService(Service):
    """Runs a :class:`Directory`'s periodic refresh while the service runs."""

    name = "inbound-directory"

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    # Service's own start/stop only flip ``running``; done here directly because they are
    # untyped (mypy --strict).
    def startService(self) -> None:
        self.running = True
        self.directory.start()

    def stopService(self) -> defer.Deferred[None]:
        self.running = False
        return self.directory.stop()
