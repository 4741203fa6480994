"""The ACME certificate in a process that does not order it: the other workers of a host.

Only one worker orders and renews (``workers``: worker 0, see
:mod:`rail.workers.plan`); it saves each certificate under ``data_dir``. The others
follow: every ``interval`` seconds they read what is saved (in a thread) and install it
when it is not the certificate they serve (another serial), so a renewal reaches every
worker within ``interval`` (what was saved before a worker started, it serves from the
start). ``load`` is the seam where the material comes
from (the file today; a shared store for several hosts).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rail.pki.files import PKIError
from rail.pki.inspect import format_time
from rail.pki.tls import ServerMaterial
from rail.refresher import Refresher

__all__ = ["FOLLOW_INTERVAL", "AcmeFollower"]

_log = Logger()

FOLLOW_INTERVAL = 300.0
"""How often a follower looks at the saved certificate (the leader renews weeks ahead)."""


class AcmeFollower(Service):
    """Installs the certificate another process saved; see the module docstring.

    ``load(now)`` reads the saved material (None: none yet; PKIError: unusable),
    ``in_thread(f)`` runs it off the reactor, ``install(material)`` swaps it into the TLS
    listeners (may return a Deferred); ``current`` is the serial served at start.
    """

    name = "acme"

    def __init__(
        self,
        *,
        clock: IReactorTime,
        load: Callable[[datetime], ServerMaterial | None],
        in_thread: Callable[[Callable[[], Any]], defer.Deferred[Any]],
        install: Callable[[ServerMaterial], object],
        current: int | None,
        interval: float = FOLLOW_INTERVAL,
    ) -> None:
        self._clock = clock
        self._load = load
        self._in_thread = in_thread
        self._install = install
        self.current = current
        """The serial of the certificate served (None: not an ACME one)."""
        self._refresher = Refresher(
            self._look, clock=clock, interval=interval, what="following the ACME certificate"
        )

    def startService(self) -> None:
        super().startService()
        self._refresher.start()

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return self._refresher.stop()

    def look(self) -> defer.Deferred[None]:
        """Look now (and fire once a look that started after this call is done)."""
        return self._refresher.refresh()

    def _look(self) -> defer.Deferred[None]:
        now = datetime.fromtimestamp(self._clock.seconds(), UTC)

        def read() -> ServerMaterial | PKIError | None:
            try:
                return self._load(now)
            except PKIError as error:
                return error

        return self._in_thread(read).addCallback(self._found)

    def _found(self, material: ServerMaterial | PKIError | None) -> Any:
        if material is None:
            return None
        if isinstance(material, PKIError):
            _log.warn("cannot follow the saved ACME certificate: {error}", error=str(material))
            return None
        leaf = material.chain[0]
        if leaf.serial_number == self.current:
            return None
        installing = defer.maybeDeferred(self._install, material)

        def installed(_: object) -> None:
            self.current = leaf.serial_number
            _log.info(
                "installed the ACME certificate serial {serial} another worker obtained,"
                " valid until {not_after}",
                serial=format(leaf.serial_number, "x"),
                not_after=format_time(leaf.not_valid_after_utc),
            )

        return installing.addCallback(installed)
