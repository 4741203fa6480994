"""The doctor's verdicts on Rail's server certificate: expiry, and whether its chain
leads a verifying sender (MTA-STS, or an application on port 465) from the host name to a
trusted root.

Pure: the chain and the trust roots are given as ``cryptography`` certificates;
:mod:`rail.doctor.inputs` reads them from disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from rail.doctor.checks import FAIL, OK, WARN, Check
from rail.pki.inspect import format_time

__all__ = ["FAIL_WITHIN", "WARN_WITHIN", "check_chain", "check_expiry"]

FAIL_WITHIN = timedelta(days=7)
"""Fewer days left than this is a FAIL: an operator may not be around to act in time."""
WARN_WITHIN = timedelta(days=21)
"""Fewer days left than this is a WARN; ACME renews at ``tls.acme.renew_before`` (30 days
by default), so under ACME a certificate this close to expiry means renewal is failing."""


def check_expiry(
    hostname: str, leaf: x509.Certificate, now: datetime, renew_before: timedelta | None
) -> Check:
    """Expired or within :data:`FAIL_WITHIN`: FAIL; within :data:`WARN_WITHIN`, or under
    ACME past ``renew_before`` by more than a day (renewal should have happened): WARN."""
    left = leaf.not_valid_after_utc - now
    until = format_time(leaf.not_valid_after_utc)
    expected = f"valid for more than {WARN_WITHIN.days} days"
    if left <= timedelta(0):
        return Check("certificate expiry", hostname, FAIL, expected, f"expired at {until}")
    found = f"expires {until} ({left.days} days left)"
    if left < FAIL_WITHIN:
        return Check("certificate expiry", hostname, FAIL, expected, found)
    late = renew_before is not None and left < renew_before - timedelta(days=1)
    if left < WARN_WITHIN or late:
        if late:
            found += " (ACME renewal is overdue)"
        return Check("certificate expiry", hostname, WARN, expected, found)
    return Check("certificate expiry", hostname, OK, expected, found)


def check_chain(
    hostname: str,
    chain: Sequence[x509.Certificate],
    trust: Sequence[x509.Certificate],
    now: datetime,
    *,
    self_signed: bool,
) -> Check:
    """The chain (leaf first) must verify for ``hostname`` up to one of ``trust`` (the
    system's roots, unless overridden). FAIL otherwise, WARN under ``tls.self_signed``,
    where a certificate from Rail's own CA is the point (development)."""
    expected = f"a chain trusted for {hostname}"
    leaf, intermediates = chain[0], list(chain[1:])
    subject = leaf.subject.rfc4514_string() or "(empty subject)"
    if not trust:
        return Check("certificate chain", hostname, WARN, expected, "no trust roots to check with")
    try:
        verifier = (
            PolicyBuilder()
            .store(Store(list(trust)))
            .time(now)
            .build_server_verifier(x509.DNSName(hostname))
        )
        verified = verifier.verify(leaf, intermediates)
    except (VerificationError, ValueError) as e:
        status = WARN if self_signed else FAIL
        note = " (tls.self_signed: Rail's own CA)" if self_signed else ""
        why = _reason(str(e))
        return Check("certificate chain", hostname, status, expected, f"{subject}: {why}{note}")
    root = verified[-1].subject.rfc4514_string()
    return Check(
        "certificate chain",
        hostname,
        OK,
        expected,
        f"{subject}, chain of {len(verified)} to {root}",
    )


def _reason(message: str) -> str:
    """cryptography's verification error, in fewer words."""
    message = message.removeprefix("validation failed: ")
    if "all candidates exhausted with no interior errors" in message:
        return "no chain to a trusted root"
    return message
