"""Wiring of TLS-RPT sending: the counting sink delivery reports to, and the reporter.

Built when ``tlsrpt.enabled``; the ``tlsrpt`` service starts both and, at stop, stops
the reporter and writes the counters left (it is added before the delivery service, so
it stops after delivery has recorded its last outcomes, and before the store closes).
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from rail.config import Config
from rail.delivery.resolve import make_resolver
from rail.store.queuestore import QueueStore
from rail.tlsrpt.report import ReportMeta
from rail.tlsrpt.sender import Reporter
from rail.tlsrpt.sink import CountingSink
from rail.tlsrpt.transport import https_poster, rua_lookup

__all__ = ["TLSRPTService", "build_tlsrpt", "report_meta"]


def report_meta(config: Config) -> ReportMeta:
    """Who the reports say they are from, with ``hostname`` filling what is not set."""
    settings = config.tlsrpt
    return ReportMeta(
        organization=settings.organization or config.hostname,
        contact=settings.contact or f"mailto:postmaster@{config.hostname}",
        submitter=config.hostname,
    )


class TLSRPTService(Service):
    """Runs the sink's flushes and the reporter's hourly look between start and stop."""

    def __init__(self, sink: CountingSink, reporter: Reporter | None) -> None:
        self.sink = sink
        self.reporter = reporter
        self.setName("tlsrpt")

    def startService(self) -> None:
        super().startService()
        self.sink.start()
        if self.reporter is not None:
            self.reporter.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self.reporter is None:
            return self.sink.stop()
        return self.reporter.stop().addCallback(lambda _: self.sink.stop())


def build_tlsrpt(
    config: Config, reactor: Any, store: QueueStore, *, report: bool = True
) -> TLSRPTService:
    """The ``tlsrpt`` service for ``config`` (``tlsrpt.enabled``); without ``report``
    (worker processes but the first) it counts outcomes but sends no reports."""
    sink = CountingSink(store, reactor)
    reporter = Reporter(
        store,
        reactor,
        report_meta(config),
        sender=config.tlsrpt.sender or f"tlsrpt-noreply@{config.hostname}",
        lookup_rua=rua_lookup(make_resolver(config.delivery.nameservers, reactor)),
        queue=store.accept,
        post=https_poster(
            reactor, config.delivery.mta_sts.ca_file, allow_private=config.tlsrpt.allow_private
        ),
    )
    return TLSRPTService(sink, reporter if report else None)
