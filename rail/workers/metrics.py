"""``/metrics`` across workers: each worker serves its own metrics to the others on a
Unix socket, and the worker a scrape reaches gathers and merges them.

The sockets are in a directory the parent makes for the run (mode 0700, removed at
stop), one per worker (``0.sock``, ``1.sock``...). A peer writes its Prometheus text and
closes: no request, nothing to parse. The gathering worker reads every other worker's
socket at once, each bounded by ``timeout`` (a worker being restarted answers nothing
and shows as ``rail_worker_up 0``), then merges the texts in a thread
(:mod:`rail.workers.metricsmerge`), so the reactor only moves bytes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.workers.metricsmerge import merge
from rail.workers.plan import WorkerSpec

__all__ = ["Gather", "PeerMetrics", "peer_path"]

_log = Logger()

InThread = Callable[..., "defer.Deferred[Any]"]


def peer_path(directory: str, index: int) -> Path:
    """Where worker ``index`` serves its metrics."""
    return Path(directory) / f"{index}.sock"


class _Tell(Protocol):
    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.factory.render())
        self.transport.loseConnection()


class PeerMetrics(Service):
    """Serves ``render()`` (this worker's Prometheus text) at ``path``."""

    name = "peer-metrics"

    def __init__(self, reactor: Any, path: Path, render: Callable[[], bytes]) -> None:
        self._reactor = reactor
        self._path = path
        self._factory = Factory.forProtocol(_Tell)
        self._factory.noisy = False
        self._factory.render = render  # type: ignore[attr-defined]
        self._port: Any = None

    def startService(self) -> None:
        super().startService()
        try:
            # A temporary directory may have been cleaned away during a long run.
            self._path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)  # left by this worker's previous life
            self._port = self._reactor.listenUNIX(str(self._path), self._factory, mode=0o600)
        except (OSError, CannotListenError) as error:
            # Metrics are not worth a worker: its samples are missing from /metrics.
            _log.error(
                "cannot serve this worker's metrics to the others at {path}: {error}",
                path=str(self._path),
                error=str(error),
            )

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        port, self._port = self._port, None
        if port is None:
            return defer.succeed(None)
        return defer.maybeDeferred(port.stopListening)


class _Read(Protocol):
    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.done: defer.Deferred[bytes | None] = defer.Deferred()
        self.aborted = False

    def dataReceived(self, data: bytes) -> None:
        self.parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback(None if self.aborted else b"".join(self.parts))


class Gather:
    """``gather(own)``: this worker's text ``own`` merged with every other worker's."""

    def __init__(
        self, reactor: Any, worker: WorkerSpec, in_thread: InThread, timeout: float = 2.0
    ) -> None:
        self._reactor = reactor
        self._worker = worker
        self._in_thread = in_thread
        self._timeout = timeout

    def __call__(self, own: bytes) -> defer.Deferred[bytes]:
        others = [k for k in range(self._worker.count) if k != self._worker.index]
        reads = [self._read(k) for k in others]
        texts: dict[int, str | None] = {self._worker.index: own.decode("utf-8")}

        def merged(found: list[bytes | None]) -> defer.Deferred[bytes]:
            for index, text in zip(others, found, strict=True):
                texts[index] = text.decode("utf-8", "replace") if text else None
            return self._in_thread(merge, self._worker.index, texts)

        gathered: defer.Deferred[list[bytes | None]] = defer.gatherResults(reads)
        return gathered.addCallback(merged)

    def _read(self, index: int) -> defer.Deferred[bytes | None]:
        path = peer_path(self._worker.peers, index)
        reader = _Read()
        endpoint = UNIXClientEndpoint(self._reactor, str(path), timeout=self._timeout)
        factory = Factory.forProtocol(lambda: reader)
        factory.noisy = False
        connecting = endpoint.connect(factory)
        timer = self._reactor.callLater(self._timeout, _abort, reader)

        def connected(_: object) -> defer.Deferred[bytes | None]:
            return reader.done

        def failed(failure: Failure) -> None:
            _log.debug("worker {index} gave no metrics: {error}", index=index, error=failure)
            return None

        def stop_timer(result: object) -> object:
            if timer.active():
                timer.cancel()
            return result

        return connecting.addCallback(connected).addErrback(failed).addBoth(stop_timer)


def _abort(reader: _Read) -> None:
    reader.aborted = True  # a text cut short is no text
    if reader.transport is not None:
        reader.transport.abortConnection()  # type: ignore[attr-defined]
