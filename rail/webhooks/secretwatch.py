"""The running server's view of the rotated webhook secrets.

``rail certs webhook-secret rotate`` writes the registry from another process; this
service reads the secrets again every ``interval`` seconds, on SIGHUP and after an admin
API rotation, in a worker thread, and installs them on the :class:`WebhookKey` that signs
every webhook (:meth:`WebhookKey.use_secrets`), on the reactor thread.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from rail.pki.files import PKIError
from rail.pki.source import RegistrySource
from rail.refresher import Refresher
from rail.webhooks.key import WebhookKey
from rail.webhooks.secrets import Rotation, read_secrets, rotate_secret

__all__ = ["SecretsWatch"]

_log = Logger()


class SecretsWatch(Service):
    """``data_dir`` is the data directory (whose registry holds the secrets) or the shared
    registry; ``in_thread(f)`` runs ``f()`` off the reactor and returns a Deferred of its
    result."""

    def __init__(
        self,
        key: WebhookKey,
        data_dir: Path | RegistrySource,
        *,
        clock: IReactorTime,
        in_thread: Callable[[Callable[[], Any]], defer.Deferred[Any]],
        interval: float,
    ) -> None:
        self.setName("webhook-secrets")
        self._key = key
        self._data_dir = data_dir
        self._clock = clock
        self._in_thread = in_thread
        self._refresher = Refresher(
            self._read, clock=clock, interval=interval, what="reading the webhook secrets"
        )

    def startService(self) -> None:
        super().startService()
        self._refresher.start()

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return self._refresher.stop()

    def refresh(self) -> defer.Deferred[None]:
        """Read the secrets now (SIGHUP)."""
        return self._refresher.refresh()

    def _read(self) -> defer.Deferred[Any]:
        reading = self._in_thread(lambda: read_secrets(self._data_dir))
        return reading.addCallbacks(self._key.use_secrets, self._unreadable)

    def _unreadable(self, failure: Any) -> None:
        failure.trap(PKIError)
        _log.error(
            "cannot read the webhook secrets ({error}); signing with those read before",
            error=failure.getErrorMessage(),
        )

    def rotate(self, client: str, overlap: float) -> defer.Deferred[Rotation]:
        """Rotate ``client``'s secret (in a thread), then sign with it at once."""
        now = self._clock.seconds()

        def work() -> Rotation:
            return rotate_secret(self._data_dir, client, now, overlap)

        rotated: defer.Deferred[Rotation] = self._in_thread(work)

        def installed(rotation: Rotation) -> defer.Deferred[Rotation]:
            return self.refresh().addCallback(lambda _: rotation)

        return rotated.addCallback(installed)
