"""The TLS-RPT aggregate report (RFC 8460 §4): from a day's counted outcomes to JSON.

Pure. Outcomes are counted per row (:class:`OutcomeRow`: one UTC day, one policy domain,
one policy, one result type, one MX host and address) by :mod:`rail.tlsrpt.sink`; here
the rows of one policy domain and day become one report: a ``policies`` entry per
distinct policy applied that day (type and text), with its success and failure totals
and a ``failure-details`` entry per result type, MX host and address. The report is
sent gzip-compressed (``application/tlsrpt+gzip``) under the file name of RFC 8460 §5.1.
"""

from __future__ import annotations

import datetime
import gzip
import json
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from rail.timefmt import rfc3339

__all__ = [
    "OutcomeRow",
    "ReportMeta",
    "build_report",
    "compress",
    "day_bounds",
    "day_of",
    "report_filename",
]


@attrs.frozen
class OutcomeRow:
    """Sessions counted under one key (see the module docstring); ``mx_host`` and
    ``receiving_ip`` are empty for successes, which the report only totals."""

    day: str
    """The UTC day, ``YYYY-MM-DD``."""
    policy_domain: str
    policy_type: str
    policy_strings: tuple[str, ...]
    result: str
    """``"success"`` or an RFC 8460 §4.3 result type."""
    mx_host: str
    receiving_ip: str
    count: int
    failure_reason: str | None = None
    """The last reason seen for this row's failures (``failure-reason-code``)."""


@attrs.frozen
class ReportMeta:
    """Who reports: the ``organization-name``, ``contact-info`` and the submitter's
    domain (``TLS-Report-Submitter``, and the first part of the file name)."""

    organization: str
    contact: str
    submitter: str


def day_of(seconds: float) -> str:
    """The UTC day (``YYYY-MM-DD``) of a POSIX time."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%d")


def day_bounds(day: str) -> tuple[int, int]:
    """The first and the last second of a UTC day, as POSIX times."""
    start = datetime.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=datetime.UTC)
    first = int(start.timestamp())
    return first, first + 86399


def _mx_patterns(policy_strings: Sequence[str]) -> list[str]:
    """The ``mx`` patterns of an MTA-STS policy's lines (RFC 8460 §4.4 ``mx-host``)."""
    patterns = []
    for line in policy_strings:
        key, _, value = line.partition(":")
        if key.strip() == "mx" and value.strip():
            patterns.append(value.strip())
    return patterns


def _policy(rows: Sequence[OutcomeRow]) -> dict[str, Any]:
    first = rows[0]
    policy: dict[str, Any] = {
        "policy-type": first.policy_type,
        "policy-domain": first.policy_domain,
    }
    if first.policy_strings or first.policy_type != "no-policy-found":
        policy["policy-string"] = list(first.policy_strings)
    if first.policy_type == "sts":
        patterns = _mx_patterns(first.policy_strings)
        if patterns:
            policy["mx-host"] = patterns
    successes = sum(row.count for row in rows if row.result == "success")
    failures = [row for row in rows if row.result != "success"]
    details: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in sorted(failures, key=lambda r: (r.result, r.mx_host, r.receiving_ip)):
        key = (row.result, row.mx_host, row.receiving_ip)
        detail = details.get(key)
        if detail is None:
            detail = {"result-type": row.result, "failed-session-count": 0}
            if row.mx_host:
                detail["receiving-mx-hostname"] = row.mx_host
            if row.receiving_ip:
                detail["receiving-ip"] = row.receiving_ip
            details[key] = detail
        detail["failed-session-count"] += row.count
        if row.failure_reason:
            detail["failure-reason-code"] = row.failure_reason
    entry: dict[str, Any] = {
        "policy": policy,
        "summary": {
            "total-successful-session-count": successes,
            "total-failure-session-count": sum(row.count for row in failures),
        },
    }
    if details:
        entry["failure-details"] = list(details.values())
    return entry


def build_report(
    rows: Iterable[OutcomeRow], meta: ReportMeta, report_id: str
) -> dict[str, Any] | None:
    """The RFC 8460 §4 report of ``rows`` (one policy domain, one day), or None if there
    are none. Policies come in a stable order (type, then text)."""
    by_policy: dict[tuple[str, tuple[str, ...]], list[OutcomeRow]] = {}
    for row in rows:
        by_policy.setdefault((row.policy_type, row.policy_strings), []).append(row)
    if not by_policy:
        return None
    day = next(iter(by_policy.values()))[0].day
    start, end = day_bounds(day)
    return {
        "organization-name": meta.organization,
        "date-range": {"start-datetime": rfc3339(start), "end-datetime": rfc3339(end)},
        "contact-info": meta.contact,
        "report-id": report_id,
        "policies": [_policy(by_policy[key]) for key in sorted(by_policy)],
    }


def compress(report: dict[str, Any]) -> bytes:
    """The report as gzip-compressed UTF-8 JSON (``application/tlsrpt+gzip``); the gzip
    header carries no time, so the same report gives the same bytes."""
    text = json.dumps(report, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return gzip.compress(text, mtime=0)


def report_filename(meta: ReportMeta, policy_domain: str, day: str, unique: str) -> str:
    """RFC 8460 §5.1: ``submitter!policy-domain!begin!end!unique.json.gz``."""
    start, end = day_bounds(day)
    return f"{meta.submitter}!{policy_domain}!{start}!{end}!{unique}.json.gz"
