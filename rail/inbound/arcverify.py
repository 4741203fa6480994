"""ARC chain validation (RFC 8617 §5.2) of inbound mail, by dkimpy's ``arc_verify``.

Runs in the verifier's worker thread (its key look-ups block on ``lookup``). The result
is what Authentication-Results reports as ``arc=`` and what a forwarded copy's ARC-Seal
takes its ``cv=`` from: ``none`` without ARC sets, ``pass`` or ``fail`` for the chain,
``temperror`` when a key look-up failed for a chain that did not pass. A message with
more than :data:`MAX_INSTANCES` sets is ``fail`` without checking them: each set costs
two signature verifications and look-ups, and real chains are a few hops long.
"""

from __future__ import annotations

import re
from typing import Literal

import dkim

from rail.inbound.answers import DNSLookup
from rail.inbound.dkimverify import _KeyFetch

__all__ = ["MAX_INSTANCES", "ARCResult", "verify_arc"]

MAX_INSTANCES = 16
_SEAL_FIELD = re.compile(rb"(?im)^arc-seal[ \t]*:")

ARCResult = Literal["pass", "fail", "none", "temperror"]


class _RecordingFetch(_KeyFetch):
    """Remembers whether any look-up failed temporarily."""

    temporary = False

    def __call__(self, name: bytes, timeout: int = 5) -> bytes | None:
        record = super().__call__(name, timeout)
        if self.problem is not None and self.problem[0] == "temperror":
            self.temporary = True
        return record


def verify_arc(lookup: DNSLookup, data: bytes) -> tuple[ARCResult, int]:
    """The chain's validation and its highest instance (0 without sets)."""
    header = data.split(b"\r\n\r\n", 1)[0]
    seals = len(_SEAL_FIELD.findall(header))
    if seals == 0:
        return "none", 0
    if seals > MAX_INSTANCES:
        return "fail", seals
    fetch = _RecordingFetch(lookup)
    try:
        cv, results, _reason = dkim.arc_verify(data, dnsfunc=fetch)
    except dkim.DKIMException:
        return "fail", seals
    instance = max((int(r.get("instance", 0)) for r in results), default=seals)
    if cv == dkim.CV_Pass:
        return "pass", instance
    if cv == dkim.CV_None:
        return "none", 0
    return ("temperror" if fetch.temporary else "fail"), instance
