"""Counting and logging quarantined messages: one line each, and a Prometheus counter.

A quarantined message (:class:`rail.store.model.Quarantined`) will never be delivered:
its stored bytes failed verification, or preparing it raised or overran its budget. That
needs an operator, so each one is logged once, as an error naming the message, and
counted in ``rail_quarantined_total{queue, kind}``. The store reports each message once,
when its quarantine is on disk, so neither the line nor the count can repeat; and since
a quarantined message is never claimed again, there is no flood to rate-limit.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from twisted.logger import Logger

from rail.store.model import Quarantined

__all__ = ["Quarantines"]

_log = Logger()


class Quarantines:
    """Observer of the store's quarantines (``store.observe_quarantined(quarantines)``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._counter = Counter(
            "rail_quarantined",
            "Messages quarantined (failed for good), by queue and kind: corrupt (stored bytes"
            " failed verification), error (preparing raised), timeout (preparing overran).",
            ["queue", "kind"],
            registry=self.registry,
        )
        for queue in ("outbound", "inbound"):
            for kind in ("corrupt", "error", "timeout"):
                self._counter.labels(queue=queue, kind=kind)
        self.counts: dict[tuple[str, str], int] = {}

    def __call__(self, record: Quarantined) -> None:
        key = (record.queue, record.kind)
        self.counts[key] = self.counts.get(key, 0) + 1
        self._counter.labels(queue=record.queue, kind=record.kind).inc()
        _log.error(
            "quarantined {queue} message {msg_id} ({kind}): {reason}",
            queue=record.queue,
            msg_id=record.message_id,
            kind=record.kind,
            reason=record.reason,
        )
