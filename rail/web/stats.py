"""``/stats`` (JSON for people and scripts) and ``/metrics`` (Prometheus text format).

Both read the queue depth from the store at request time, off the reactor thread, and the
delivery figures from :class:`rail.delivery.stats.DeliveryStats`. Who may read them is
``web.public_stats`` (:mod:`rail.web.statsaccess` wraps both): they carry counts, never
addresses or content, but each request costs a store read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IReactorTime

from rail.delivery.stats import DeliveryStats
from rail.store.model import IDeliveryQueue
from rail.web.jsonapi import JSONResource, error_body
from rail.web.send import finish_later

__all__ = ["Metrics", "Stats"]


class Stats(JSONResource):
    isLeaf = True

    def __init__(self, stats: DeliveryStats, queue: IDeliveryQueue, clock: IReactorTime) -> None:
        super().__init__()
        self._stats = stats
        self._queue = queue
        self._clock = clock

    def render_GET(self, request: Any) -> Any:
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")

        def render(counts: dict[str, int]) -> bytes:
            document = self._stats.snapshot(self._clock.seconds(), counts)
            return json.dumps(document, indent=2).encode() + b"\n"

        return finish_later(request, _or_unavailable(request, self._stats, self._queue, render))


class Metrics(JSONResource):
    isLeaf = True

    def __init__(
        self,
        stats: DeliveryStats,
        queue: IDeliveryQueue,
        gather: Callable[[bytes], Deferred[bytes]] | None = None,
    ) -> None:
        """``gather(own)`` (one of several workers, see :mod:`rail.workers.metrics`)
        merges this process's text with the other workers'."""
        super().__init__()
        self._stats = stats
        self._queue = queue
        self._gather = gather

    def render_GET(self, request: Any) -> Any:
        request.setHeader(b"Cache-Control", b"no-store")

        def render(counts: dict[str, int]) -> bytes | Deferred[bytes]:
            request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
            self._stats.set_queue(counts)
            own = bytes(generate_latest(self._stats.registry))
            return own if self._gather is None else self._gather(own)

        return finish_later(request, _or_unavailable(request, self._stats, self._queue, render))


def _or_unavailable(request: Any, stats: DeliveryStats, queue: IDeliveryQueue, render: Any) -> Any:
    """``render(counts)`` once ``stats``' refreshers are done, or a JSON 503 when the
    store cannot answer."""

    def unavailable(failure: Any) -> bytes:
        request.setResponseCode(503)
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        return error_body("QUEUE_UNAVAILABLE", "the queue cannot be read now")

    counts = queue.recipient_counts()
    if stats.refreshers:
        waiting = [counts, *(maybeDeferred(refresh) for refresh in stats.refreshers)]
        counts = gatherResults(waiting, consumeErrors=True).addCallback(lambda found: found[0])
    return counts.addCallbacks(render, unavailable)
