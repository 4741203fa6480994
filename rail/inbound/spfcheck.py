"""SPF (RFC 7208) for a received message, by pyspf, over an injected DNS lookup.

pyspf asks DNS through its module-level ``spf.DNSLookup(name, qtype, strict, timeout)``
and has no per-query hook. This module installs, once at import, a dispatcher there
that sends each question to the :class:`rail.inbound.answers.DNSLookup` of the check
running in the *calling thread* (a thread-local), and to pyspf's own dnspython lookup
when there is none, so other users of pyspf in the process are unaffected. Nothing is
replaced per call. pyspf imports dnspython (or py3dns) at import even though Rail's
questions never reach it; dnspython is there already, as a dependency of dkimpy.

The checked identity is MAIL FROM, or ``postmaster@<HELO>`` for the null reverse path
(RFC 7208 §2.4, scope ``helo``). pyspf enforces the limits of §4.6.4 (10 DNS-querying
terms, 2 void lookups) as ``permerror``; a DNS failure is ``temperror``; a domain
without an SPF record is ``none``.
"""

from __future__ import annotations

import threading
from typing import Any, Literal, cast

import attrs
import spf  # type: ignore[import-untyped]

from rail.inbound.answers import DNSLookup, DNSTemporaryError, RecordType

__all__ = ["SPFOutcome", "check_spf"]

SPFResult = Literal["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"]
_RESULTS = frozenset({"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"})
_REASON = 200

_current = threading.local()
_original_lookup = spf.DNSLookup


@attrs.frozen
class SPFOutcome:
    """pyspf's verdict on one identity; ``reason`` is its explanation, when useful."""

    result: SPFResult
    scope: Literal["mailfrom", "helo"]
    domain: str
    reason: str | None = None


def _dispatch(name: str, qtype: str, strict: Any = True, timeout: Any = 20) -> list[Any]:
    """pyspf's ``DNSLookup`` signature, answered by the calling thread's lookup."""
    lookup: DNSLookup | None = getattr(_current, "lookup", None)
    if lookup is None:
        return list(_original_lookup(name, qtype, strict, timeout))
    if qtype not in ("A", "AAAA", "MX", "PTR", "TXT"):
        return []  # type SPF (99) is obsolete (RFC 7208 §3.1); pyspf asks only when harsh
    try:
        values = lookup.query(name, cast(RecordType, qtype))
    except DNSTemporaryError as error:
        raise spf.TempError(f"DNS {error}") from error
    if qtype == "TXT":
        # pyspf joins each record's strings itself: one already-joined string each.
        return [((name, qtype), [value]) for value in values]
    return [((name, qtype), value) for value in values]


spf.DNSLookup = _dispatch


def check_spf(lookup: DNSLookup, ip: str, helo: str, sender: str) -> SPFOutcome:
    """Check ``ip`` against the SPF record of ``sender``'s domain, or of ``helo`` when
    ``sender`` is empty. Runs in a worker thread: ``lookup`` blocks."""
    query = spf.query(i=ip, s=sender, h=helo, receiver="rail", strict=True)
    scope: Literal["mailfrom", "helo"] = "mailfrom" if sender else "helo"
    domain = str(query.o or helo).lower()
    _current.lookup = lookup
    try:
        result, _code, explanation = query.check()
    finally:
        _current.lookup = None
    if result not in _RESULTS:
        result, explanation = "permerror", f"unexpected pyspf result {result!r}"
    reason = str(explanation)[:_REASON] if explanation else None
    return SPFOutcome(result=result, scope=scope, domain=domain, reason=reason)
