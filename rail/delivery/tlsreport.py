"""The hook through which delivery reports each TLS outcome, for TLS-RPT (RFC 8460).

Pure. The connect step records one :class:`TLSOutcome` per session it tried under a
:class:`~rail.delivery.tlspolicy.TLSRequirement` (a success, or the RFC 8460 §4.3 result
type of what failed), and the MTA-STS code records policy fetch failures; a
:class:`TLSOutcomeSink` receives them. The sink is called on the reactor thread, once per
session, so it must be cheap and never block: aggregate in memory, write elsewhere.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from rail.delivery.tlspolicy import PolicyType, TLSRequirement

__all__ = [
    "DISCARD",
    "FAILURE_RESULTS",
    "DiscardOutcomes",
    "TLSOutcome",
    "TLSOutcomeSink",
    "outcome_for",
]

FAILURE_RESULTS: frozenset[str] = frozenset(
    {
        # Negotiation failures (RFC 8460 §4.3.1)
        "starttls-not-supported",
        "certificate-host-mismatch",
        "certificate-expired",
        "certificate-not-trusted",
        "validation-failure",
        # Policy failures: DANE (§4.3.2.1), MTA-STS (§4.3.2.2)
        "tlsa-invalid",
        "dnssec-invalid",
        "dane-required",
        "sts-policy-fetch-error",
        "sts-policy-invalid",
        "sts-webpki-invalid",
    }
)
"""The RFC 8460 ``result-type`` values a failed outcome may carry."""


def _result(instance: object, attribute: object, value: str) -> None:
    if value != "success" and value not in FAILURE_RESULTS:
        raise ValueError(f"unknown TLS-RPT result type {value!r}")


@attrs.frozen(kw_only=True)
class TLSOutcome:
    """How one TLS session attempt (or one policy fetch) went."""

    policy_domain: str
    """The recipient domain whose policy applied."""
    policy_type: PolicyType
    policy_strings: tuple[str, ...] = ()
    mx_host: str | None = None
    """The MX host name (None for a failure before any host, e.g. a policy fetch)."""
    receiving_ip: str | None = None
    result: str = attrs.field(default="success", validator=_result)
    """``"success"`` or one of :data:`FAILURE_RESULTS`."""
    failure_reason: str | None = None
    """A line of text for the report's ``failure-reason-code`` and the log."""

    @property
    def succeeded(self) -> bool:
        return self.result == "success"


def outcome_for(
    requirement: TLSRequirement,
    mx_host: str | None,
    receiving_ip: str | None,
    result: str = "success",
    failure_reason: str | None = None,
) -> TLSOutcome:
    """The outcome of a session under ``requirement`` (its policy domain, type and text)."""
    return TLSOutcome(
        policy_domain=requirement.policy_domain or (mx_host or ""),
        policy_type=requirement.policy_type,
        policy_strings=requirement.policy_strings,
        mx_host=mx_host,
        receiving_ip=receiving_ip,
        result=result,
        failure_reason=failure_reason,
    )


class TLSOutcomeSink(Protocol):
    """Receives TLS outcomes; see the module docstring for the rules."""

    def record(self, outcome: TLSOutcome) -> None:
        """Take one outcome (on the reactor thread; cheap, never raises)."""


class DiscardOutcomes:
    """The sink when nothing aggregates outcomes (TLS-RPT off)."""

    def record(self, outcome: TLSOutcome) -> None:
        """Drop ``outcome``."""


DISCARD: TLSOutcomeSink = DiscardOutcomes()
