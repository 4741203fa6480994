"""Rail's own TLS-RPT mailbox on port 25: reports other senders send about Rail's domains.

When ``dns.tls_rpt`` is a ``mailto:`` address in one of Rail's domains, that address is
accepted on port 25 for any sender (it is what Rail publishes in ``_smtp._tls``). A
message to it is not stored and not POSTed to any client's webhook: it is read
(:mod:`rail.tlsrpt.received`, in a thread, since inflating and parsing cost time linear
in a report of up to 10 MiB) and becomes

- ``rail_tlsrpt_received_reports_total{sender_org}`` and
  ``rail_tlsrpt_received_failures_total{sender_org, result_type}`` (sessions), and
- one log line per report with failures, naming the sender, the domains and the result
  types; a report without failures is counted, not logged; an unreadable one is logged.

Reports are statistics from strangers, unauthenticated: they are for the operator to
look at, never acted on. ``sender_org`` takes the first :data:`MAX_ORGS` organization
names seen and ``other`` afterwards, so a flood of invented names cannot grow the
metrics without bound; ``result_type`` is kept only for RFC 8460's registered types.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.delivery.tlsreport import FAILURE_RESULTS
from rail.tlsrpt.received import ReceivedReport, ReportError, read_report
from rail.tlsrpt.record import mailto_address

__all__ = ["MAX_ORGS", "ReportMailbox", "report_address"]

_log = Logger()

MAX_ORGS = 100
"""Distinct ``sender_org`` label values before further ones count as ``other``."""
_LABEL = re.compile(r"[^A-Za-z0-9 ._@-]")


def report_address(tls_rpt: str | None, domains: set[str]) -> str | None:
    """The address Rail receives reports at: ``dns.tls_rpt`` when it is a ``mailto:``
    URI whose domain is one of ``domains`` (Rail's own), else None."""
    address = mailto_address(tls_rpt) if tls_rpt else None
    if address is None:
        return None
    return address if address.rpartition("@")[2].lower() in domains else None


class ReportMailbox:
    """See the module docstring; ``in_thread(f)`` runs ``f()`` off the reactor."""

    def __init__(
        self,
        address: str,
        in_thread: Callable[[Callable[[], Any]], Deferred[Any]],
        registry: CollectorRegistry | None = None,
    ) -> None:
        local, _, domain = address.rpartition("@")
        self._key = (local, domain.lower())
        self._in_thread = in_thread
        self.registry = registry or CollectorRegistry()
        self._reports = Counter(
            "rail_tlsrpt_received_reports",
            "TLS-RPT reports received at Rail's own rua, by sender organization.",
            ["sender_org"],
            registry=self.registry,
        )
        self._failures = Counter(
            "rail_tlsrpt_received_failures",
            "Failed sessions reported to Rail's own rua, by sender organization and RFC 8460"
            " result type.",
            ["sender_org", "result_type"],
            registry=self.registry,
        )
        self._orgs: set[str] = set()

    def accepts(self, address: str) -> bool:
        """Whether ``address`` (a RCPT path) is the report mailbox."""
        local, _, domain = address.rpartition("@")
        return (local, domain.lower()) == self._key

    def receive(self, data: bytes, peer: str) -> Deferred[ReceivedReport | None]:
        """Read the report in ``data`` (in a thread), count it and log it; fires with it,
        or None when it was unreadable (that is logged). Never fails."""
        reading = self._in_thread(lambda: read_report(data))
        return reading.addCallbacks(self._received, self._unreadable, errbackArgs=(peer,))

    def _org(self, name: str) -> str:
        label = _LABEL.sub("", name)[:64] or "unknown"
        if label in self._orgs:
            return label
        if len(self._orgs) >= MAX_ORGS:
            return "other"
        self._orgs.add(label)
        return label

    def _received(self, report: ReceivedReport) -> ReceivedReport:
        org = self._org(report.organization)
        self._reports.labels(sender_org=org).inc()
        results: dict[str, int] = {}
        for policy in report.policies:
            for result, count in policy.by_result.items():
                kind = result if result in FAILURE_RESULTS else "other"
                results[kind] = results.get(kind, 0) + count
        for kind, count in results.items():
            self._failures.labels(sender_org=org, result_type=kind).inc(count)
        if report.failures:
            failing = [p for p in report.policies if p.failures]
            _log.warn(
                "TLS-RPT report {report_id} from {org}: {failures} failed TLS sessions to"
                " {domains} ({results})",
                report_id=report.report_id,
                org=report.organization,
                failures=report.failures,
                domains=", ".join(sorted({p.domain for p in failing})),
                results=", ".join(f"{k}={v}" for k, v in sorted(results.items())) or "no details",
            )
        return report

    def _unreadable(self, failure: Failure, peer: str) -> None:
        why = failure.getErrorMessage() if failure.check(ReportError) else "internal error"
        if not failure.check(ReportError):
            _log.failure("reading a TLS-RPT report failed", failure)
        _log.info("unreadable TLS-RPT report from peer={peer}: {why}", peer=peer, why=why)
        return None
