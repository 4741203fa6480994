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
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.config.schema import Config
from rail.inbound.recipients import RecipientTable, recipient_table, routing_problems
from rail.pki.registry import CertificateRecord
from rail.refresher import Refresher

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
        self._records: tuple[CertificateRecord, ...] = ()
        self._table = recipient_table(config, (), self._now())
        self._problems: list[str] = []
        self._refresher = Refresher(
            self._read_in_thread,
            clock=clock,
            interval=interval,
            what="building the inbound recipient table",
        )

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
        self._refresher.start()

    def stop(self) -> defer.Deferred[None]:
        """Stop refreshing; fires once a read in progress has finished."""
        return self._refresher.stop()

    def refresh(self) -> defer.Deferred[None]:
        """Read the registry again now, in a thread. If a read is already running, one
        more follows it (it may have started before the change the caller knows of).
        Fires with None once a read started after this call has finished, whether or not
        it succeeded (failures are logged; the previous table stays)."""
        return self._refresher.refresh()

    def _read_in_thread(self) -> defer.Deferred[None]:
        now = self._now()
        read = self._read_records
        reading: defer.Deferred[Any] = self._in_thread(lambda: tuple(read(now)))
        return reading.addCallbacks(self._read, self._failed, callbackArgs=(now,))

    def _read(self, records: tuple[CertificateRecord, ...], now: datetime) -> None:
        self._install(records, now)

    def _failed(self, failure: Failure) -> None:
        _log.error(
            "cannot read the certificate registry; inbound routing keeps the previous table: {why}",
            why=failure.getErrorMessage(),
        )

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
