"""Reading a TLS-RPT report another sender mailed to Rail's own ``rua`` (RFC 8460 §5.3).

Pure. The report is the message's ``application/tlsrpt+gzip`` or
``application/tlsrpt+json`` part (or, from a sloppy sender, any part whose file name
ends in ``.json.gz`` or ``.json``, or a body that is JSON itself). A gzip report is
inflated to at most :data:`MAX_REPORT` bytes, so a small attachment cannot make Rail
hold gigabytes. From the JSON only what the operator acts on is kept: who sent it, the
report id, and per policy domain the success and failure totals and the failures by
result type. Anything unusable is a :class:`ReportError` with a reason.
"""

from __future__ import annotations

import email
import email.policy
import json
import zlib
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

import attrs

__all__ = ["MAX_REPORT", "PolicySummary", "ReceivedReport", "ReportError", "read_report"]

MAX_REPORT = 10 * 1024 * 1024
"""Bytes of JSON a received report may have (after inflating)."""
_TYPES = ("application/tlsrpt+gzip", "application/tlsrpt+json")


class ReportError(ValueError):
    """The message holds no readable TLS-RPT report; the text says why."""


@attrs.frozen
class PolicySummary:
    """One ``policies`` entry: its domain, totals and failures by result type."""

    domain: str
    successes: int
    failures: int
    by_result: Mapping[str, int]


@attrs.frozen
class ReceivedReport:
    organization: str
    report_id: str
    policies: tuple[PolicySummary, ...]

    @property
    def failures(self) -> int:
        return sum(policy.failures for policy in self.policies)


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
    try:
        out = inflater.decompress(data, MAX_REPORT + 1)
    except zlib.error as error:
        raise ReportError(f"bad gzip data: {error}") from None
    if len(out) > MAX_REPORT:
        raise ReportError(f"the report inflates to more than {MAX_REPORT} bytes")
    return out


def _payload(message: EmailMessage) -> bytes:
    """The report's bytes: the typed part, else a part named like a report, else the body."""
    candidates: list[Any] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        name = (part.get_filename() or "").lower()
        if kind in _TYPES:
            candidates.insert(0, part)
        elif name.endswith((".json.gz", ".json")) or kind == "application/json":
            candidates.append(part)
    if not candidates and not message.is_multipart():
        candidates.append(message)
    if not candidates:
        raise ReportError("no application/tlsrpt+gzip or +json part")
    data = candidates[0].get_payload(decode=True)
    if not isinstance(data, bytes) or not data:
        raise ReportError("the report part is empty")
    return data


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ReportError(f"a session count is not a non-negative integer: {value!r}")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ReportError(f"{what} is missing")
    return value[:200]


def _policy(entry: Any) -> PolicySummary:
    if not isinstance(entry, dict):
        raise ReportError("a policies entry is not an object")
    policy, summary = entry.get("policy"), entry.get("summary")
    if not isinstance(policy, dict) or not isinstance(summary, dict):
        raise ReportError("a policies entry lacks policy or summary")
    by_result: dict[str, int] = {}
    details = entry.get("failure-details", [])
    if not isinstance(details, list):
        raise ReportError("failure-details is not a list")
    for detail in details:
        if not isinstance(detail, dict):
            raise ReportError("a failure-details entry is not an object")
        result = _text(detail.get("result-type"), "result-type")[:64]
        by_result[result] = by_result.get(result, 0) + _count(detail.get("failed-session-count"))
    return PolicySummary(
        domain=_text(policy.get("policy-domain"), "policy-domain").lower(),
        successes=_count(summary.get("total-successful-session-count")),
        failures=_count(summary.get("total-failure-session-count")),
        by_result=by_result,
    )


def read_report(raw: bytes) -> ReceivedReport:
    """The report mailed in ``raw`` (a whole message); raises :class:`ReportError`."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    data = _payload(message)
    if data[:2] == b"\x1f\x8b":
        data = _inflate(data)
    elif len(data) > MAX_REPORT:
        raise ReportError(f"the report is larger than {MAX_REPORT} bytes")
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise ReportError(f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ReportError("the report is not a JSON object")
    policies = document.get("policies")
    if not isinstance(policies, list):
        raise ReportError("policies is missing")
    return ReceivedReport(
        organization=_text(document.get("organization-name"), "organization-name"),
        report_id=_text(document.get("report-id"), "report-id"),
        policies=tuple(_policy(entry) for entry in policies),
    )
