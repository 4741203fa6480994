"""When to order an ACME certificate, when to look again, how long to back off.

Pure decisions over plain values (times are POSIX seconds from the caller's clock), so the
renewal service only schedules what these return and the table tests need no reactor.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509

from rail.pki.inspect import format_time

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_MIN",
    "CHECK_INTERVAL",
    "JITTER_SPREAD",
    "backoff_delay",
    "certificate_names",
    "next_check_delay",
    "renewal_reason",
]

CHECK_INTERVAL = 24 * 3600.0
"""A certificate that needs nothing is looked at again this often (daily)."""
BACKOFF_MIN = 60.0
"""Delay after the first failed order; it doubles with each further failure..."""
BACKOFF_MAX = 24 * 3600.0
"""... up to this."""
JITTER_SPREAD = 0.25
"""A back-off delay is shortened by up to this fraction, so that many Rail instances behind
one CA outage do not retry in lockstep."""


def certificate_names(leaf: x509.Certificate) -> frozenset[str]:
    """The DNS names in the certificate's subjectAltName, lower-case."""
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return frozenset()
    return frozenset(name.lower() for name in san.get_values_for_type(x509.DNSName))


def renewal_reason(
    leaf: x509.Certificate | None, names: Iterable[str], now: float, renew_before: float
) -> str | None:
    """Why a new certificate must be ordered now, or None if ``leaf`` is good for now.

    A certificate is replaced when there is none, when it lacks one of ``names`` (a local
    domain was added, so a new ``mta-sts.`` name is wanted), or when it expires within
    ``renew_before`` seconds of ``now``.
    """
    if leaf is None:
        return "no ACME certificate yet"
    missing = sorted({name.lower() for name in names} - certificate_names(leaf))
    if missing:
        return f"the certificate does not cover {', '.join(missing)}"
    not_after = leaf.not_valid_after_utc
    if not_after.timestamp() - now <= renew_before:
        return f"the certificate expires at {format_time(not_after)}"
    return None


def next_check_delay(
    leaf: x509.Certificate, now: float, renew_before: float, interval: float = CHECK_INTERVAL
) -> float:
    """Seconds until the next look at a certificate that needs nothing now: ``interval``
    (daily), or sooner if it enters its renewal window before that."""
    due = leaf.not_valid_after_utc.timestamp() - renew_before
    return max(0.0, min(interval, due - now))


def backoff_delay(failures: int, jitter: float) -> float:
    """Seconds to wait after ``failures`` (>= 1) orders in a row failed.

    ``BACKOFF_MIN`` doubled for each failure after the first, capped at ``BACKOFF_MAX``,
    then shortened by ``jitter * JITTER_SPREAD`` of itself; ``jitter`` is in [0, 1).
    """
    if failures < 1:
        raise ValueError(f"failures must be at least 1, not {failures}")
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), not {jitter}")
    # Cap the exponent before computing it: a server down for months must not overflow.
    base = BACKOFF_MIN * 2.0 ** min(failures - 1, 32)
    return min(base, BACKOFF_MAX) * (1.0 - JITTER_SPREAD * jitter)
