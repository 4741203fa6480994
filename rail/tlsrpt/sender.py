"""Sending the daily TLS-RPT reports (RFC 8460 §5): one per policy domain and UTC day.

Every ``interval`` (an hour) and once at start, :meth:`Reporter.run` looks for counted
days before today (the store reads them on its read thread), and for each policy domain
of such a day asks the DNS for its ``_smtp._tls`` record. For each ``rua`` URI:

- ``mailto:``: the report message (:mod:`rail.tlsrpt.mail`) is queued through Rail's
  own outbound queue, from the null reverse-path (a report that cannot be delivered
  must not bounce back into Rail), and is DKIM-signed for its From domain when it is
  delivered, like any message;
- ``https:``: the gzip report is POSTed with ``Content-Type: application/tlsrpt+gzip``
  through ``post`` (treq in production); a failure is logged, not retried (RFC 8460
  §5.4 leaves retries to the sender; one day's statistics are not worth a queue).

Once a domain's report is out (or the domain asks for none) its rows of that day are
deleted. A DNS failure leaves them for the next run; rows older than ``keep_days`` are
dropped anyway. Everything that costs work (JSON, gzip, the message) is done per
domain, linear in that domain's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.store.ids import new_message_id
from rail.store.model import NewMessage
from rail.tlsrpt.mail import report_message
from rail.tlsrpt.record import mailto_address
from rail.tlsrpt.report import (
    OutcomeRow,
    ReportMeta,
    build_report,
    compress,
    day_of,
    report_filename,
)

__all__ = [
    "REPORT_CLIENT",
    "REPORT_INTERVAL",
    "ITLSReportStore",
    "Reporter",
    "SentReport",
    "TemporaryLookupError",
]

_log = Logger()

REPORT_INTERVAL = 3600.0
"""Seconds between looks for finished days to report."""
REPORT_CLIENT = "rail-tlsrpt"
"""The client name report messages are queued under (status, logs)."""


class ITLSReportStore(Protocol):
    """What the reporter needs of the store (:class:`rail.store.tlsreports.SQLiteTLSReports`)."""

    def tls_unreported_days(self, before: str) -> Deferred[list[str]]: ...
    def tls_day(self, day: str) -> Deferred[list[Any]]: ...
    def tls_reported(self, day: str, domains: Sequence[str]) -> Deferred[int]: ...
    def tls_drop_before(self, day: str) -> Deferred[int]: ...


class TemporaryLookupError(Exception):
    """The ``_smtp._tls`` look-up failed in a way that may succeed later."""


@attrs.frozen
class SentReport:
    """What one run sent for one domain (for the log and tests)."""

    day: str
    policy_domain: str
    report_id: str
    destinations: tuple[str, ...]
    failures: int


class Reporter:
    """See the module docstring.

    ``lookup_rua(domain)`` fires with the domain's report URIs (``()`` for none) or fails
    with :class:`TemporaryLookupError`; ``queue(message)`` makes a :class:`NewMessage`
    durable (the store's ``accept``); ``post(url, body)`` POSTs the gzip report and
    fires with the HTTP status code.
    """

    def __init__(
        self,
        store: ITLSReportStore,
        clock: IReactorTime,
        meta: ReportMeta,
        *,
        sender: str,
        lookup_rua: Callable[[str], Deferred[tuple[str, ...]]],
        queue: Callable[[NewMessage], Deferred[Any]],
        post: Callable[[str, bytes], Deferred[int]],
        keep_days: int = 3,
        interval: float = REPORT_INTERVAL,
    ) -> None:
        self._store = store
        self._clock = clock
        self._meta = meta
        self._sender = sender
        self._lookup_rua = lookup_rua
        self._queue = queue
        self._post = post
        self._keep_days = keep_days
        self._interval = interval
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock
        self._running: Deferred[list[SentReport]] | None = None

    def start(self) -> None:
        self._loop.start(self._interval, now=True)

    def stop(self) -> Deferred[None]:
        """Stop the timer; fires once a run in progress has finished."""
        if self._loop.running:
            self._loop.stop()
        running = self._running
        done: Deferred[None] = Deferred()
        if running is None:
            done.callback(None)
        else:
            running.addBoth(lambda _: done.callback(None))
        return done

    def _tick(self) -> None:
        if self._running is None:
            self.run()

    def run(self) -> Deferred[list[SentReport]]:
        """Report every finished day now; fires with what was sent."""
        running = Deferred.fromCoroutine(self._run())
        self._running = running

        def finished(result: Any) -> Any:
            self._running = None
            return result

        def failed(failure: Failure) -> list[SentReport]:
            _log.failure("TLS-RPT reporting failed", failure)
            return []

        running.addBoth(finished)
        return running.addErrback(failed)

    async def _run(self) -> list[SentReport]:
        now = self._clock.seconds()
        today = day_of(now)
        oldest = day_of(now - self._keep_days * 86400)
        await self._store.tls_drop_before(oldest)
        sent: list[SentReport] = []
        for day in await self._store.tls_unreported_days(today):
            rows = [OutcomeRow(*row) for row in await self._store.tls_day(day)]
            by_domain: dict[str, list[OutcomeRow]] = {}
            for row in rows:
                by_domain.setdefault(row.policy_domain, []).append(row)
            done: list[str] = []
            for domain, domain_rows in by_domain.items():
                try:
                    uris = await self._lookup_rua(domain)
                except TemporaryLookupError as error:
                    _log.info(
                        "TLS-RPT: cannot look up where {domain} wants reports ({error});"
                        " trying again later",
                        domain=domain,
                        error=str(error),
                    )
                    continue
                if uris:
                    sent.append(await self._send(day, domain, domain_rows, uris))
                done.append(domain)
            if done:
                await self._store.tls_reported(day, done)
        return sent

    async def _send(
        self, day: str, domain: str, rows: list[OutcomeRow], uris: Sequence[str]
    ) -> SentReport:
        now = self._clock.seconds()
        unique = new_message_id(now)
        report_id = f"{unique}@{self._meta.submitter}"
        report = build_report(rows, self._meta, report_id)
        assert report is not None
        compressed = compress(report)
        filename = report_filename(self._meta, domain, day, unique)
        failures = sum(row.count for row in rows if row.result != "success")
        delivered: list[str] = []
        for uri in uris:
            address = mailto_address(uri)
            try:
                if address is not None:
                    message_id = new_message_id(now)
                    data = report_message(
                        sender=self._sender,
                        recipient=address,
                        policy_domain=domain,
                        submitter=self._meta.submitter,
                        report_id=report_id,
                        filename=filename,
                        compressed=compressed,
                        message_id=message_id,
                        now=now,
                    )
                    await self._queue(
                        NewMessage(
                            id=message_id,
                            client=REPORT_CLIENT,
                            sender="",
                            recipients=(address,),
                            data=data,
                            channel="smtp",
                            received_at=now,
                            smtputf8=not address.isascii(),
                        )
                    )
                else:
                    status = await self._post(uri, compressed)
                    if not 200 <= status < 300:
                        raise RuntimeError(f"HTTP {status}")
            except Exception as error:
                _log.warn(
                    "TLS-RPT: the report for {domain} of {day} could not go to {uri}: {error}",
                    domain=domain,
                    day=day,
                    uri=uri,
                    error=str(error) or type(error).__name__,
                )
                continue
            delivered.append(uri)
        _log.info(
            "TLS-RPT: report {report_id} for {domain} of {day} ({failures} failed sessions)"
            " sent to {destinations}",
            report_id=report_id,
            domain=domain,
            day=day,
            failures=failures,
            destinations=", ".join(delivered) or "nobody",
        )
        return SentReport(day, domain, report_id, tuple(delivered), failures)
