"""DMARC (RFC 7489): the Author Domain, policy discovery, identifier alignment and the
policy that applies. Small pure code of Rail's own over an injected DNS lookup.

Not a library: the maintained candidates on PyPI either align identifiers without the
Public Suffix List (``dmarc`` treats any parent domain, ``com`` included, as aligned in
relaxed mode, and ignores ``pct``) or do their own blocking DNS through dnspython with a
bundled suffix list (``authheaders``). The rules themselves are short.

- Author Domain (§6.6.1): the domain of the single RFC5322.From field. No From field:
  ``none`` (there is nothing DMARC can evaluate). Several From fields, several addresses
  with different domains, or an address without a usable domain: ``permerror``.
- Discovery (§6.6.3): ``_dmarc.<Author Domain>``, then ``_dmarc.<Organizational
  Domain>``. Only TXT records starting ``v=DMARC1`` count; none or several: ``none``. A
  record that starts right but is otherwise malformed is ``permerror``; a DNS failure is
  ``temperror``.
- Organizational Domain (§3.2): one label below the public suffix, by the Public Suffix
  List (``publicsuffixlist``, ICANN and private sections). A public suffix is its own.
- Alignment (§3.1): strict means equal domains, relaxed equal Organizational Domains.
  SPF aligns by the domain SPF checked (the MAIL FROM domain, or HELO for the null
  reverse path, which RFC 7208 §2.4 makes the MAIL FROM identity).
- Policy (§6.3, §6.6.4): ``sp`` when the record was found at the Organizational Domain
  for a subdomain, else ``p``. On failure a message outside ``pct`` gets the next less
  strict policy (reject to quarantine, quarantine to none). On pass the published policy
  is reported unsampled.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Sequence
from email.utils import getaddresses
from typing import Literal

import attrs
from publicsuffixlist import PublicSuffixList

from rail.dkim.names import a_label
from rail.inbound.answers import DNSLookup, DNSTemporaryError
from rail.inbound.model import DKIMResult

__all__ = [
    "DMARCOutcome",
    "DMARCRecord",
    "DMARCRecordError",
    "Discovery",
    "aligned",
    "author_domain",
    "discover",
    "evaluate",
    "organizational_domain",
    "parse_record",
]

Disposition = Literal["none", "quarantine", "reject"]
Alignment = Literal["r", "s"]
_DISPOSITIONS: tuple[Disposition, ...] = ("none", "quarantine", "reject")
_LESS_STRICT: dict[Disposition, Disposition] = {
    "reject": "quarantine",
    "quarantine": "none",
    "none": "none",
}
_VERSION = re.compile(rb"^v[ \t]*=[ \t]*DMARC1[ \t]*(;|$)")
_TAG = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_FROM_FIELD = re.compile(rb"(?i)^from[ \t]*:")


class DMARCRecordError(ValueError):
    """A ``v=DMARC1`` record that breaks the grammar of RFC 7489 §6.4."""


@attrs.frozen
class DMARCRecord:
    """The tags of a DMARC record that decide a message's fate."""

    p: Disposition
    sp: Disposition | None = None
    adkim: Alignment = "r"
    aspf: Alignment = "r"
    pct: int = 100


@attrs.frozen
class Discovery:
    """What policy discovery found: ``record`` and where (``at``), or a ``result``
    (``none``, ``temperror``, ``permerror``) that ends DMARC for the message."""

    record: DMARCRecord | None = None
    at: str | None = None
    result: Literal["none", "temperror", "permerror"] | None = None
    reason: str | None = None


@attrs.frozen
class DMARCOutcome:
    """The ``dmarc=`` result and the policy that applies (see the module docstring)."""

    result: Literal["pass", "fail", "none", "temperror", "permerror"]
    policy: Disposition | None = None
    reason: str | None = None


@functools.cache
def _suffixes() -> PublicSuffixList:
    """The list, loaded once on first use (it takes a few tens of milliseconds)."""
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """``domain``'s Organizational Domain (lower-case, no root dot)."""
    name = domain.lower().rstrip(".")
    found = _suffixes().privatesuffix(name)
    return str(found) if found else name


def aligned(author: str, identifier: str, mode: Alignment) -> bool:
    """Whether ``identifier`` (a ``d=`` or the SPF domain) aligns with the Author Domain."""
    a, b = author.lower().rstrip("."), identifier.lower().rstrip(".")
    if mode == "s":
        return a == b
    return a == b or organizational_domain(a) == organizational_domain(b)


def parse_record(text: bytes) -> DMARCRecord:
    """Parse a record already known to start with ``v=DMARC1``.

    Unknown tags are ignored (§6.3); a known tag with a bad value, or a missing ``p``
    without a ``rua`` (§6.6.3 step 6 reads such a record as ``p=none``), raises
    DMARCRecordError.
    """
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError:
        raise DMARCRecordError("not ASCII") from None
    tags: dict[str, str] = {}
    for part in decoded.split(";")[1:]:
        if not part.strip():
            continue
        name, equals, value = part.partition("=")
        name = name.strip().lower()
        if not equals or not _TAG.match(name):
            raise DMARCRecordError(f"bad tag {part.strip()[:20]!r}")
        tags.setdefault(name, value.strip())
    p = tags.get("p")
    if p is None:
        if not tags.get("rua"):
            raise DMARCRecordError("no p= tag")
        p = "none"
    return DMARCRecord(
        p=_disposition("p", p),
        sp=_disposition("sp", tags["sp"]) if "sp" in tags else None,
        adkim=_alignment("adkim", tags.get("adkim", "r")),
        aspf=_alignment("aspf", tags.get("aspf", "r")),
        pct=_percent(tags.get("pct", "100")),
    )


def _disposition(tag: str, value: str) -> Disposition:
    for known in _DISPOSITIONS:
        if value.lower() == known:
            return known
    raise DMARCRecordError(f"bad {tag}= value")


def _alignment(tag: str, value: str) -> Alignment:
    if value.lower() == "r":
        return "r"
    if value.lower() == "s":
        return "s"
    raise DMARCRecordError(f"bad {tag}= value")


def _percent(value: str) -> int:
    if not value.isdigit() or int(value) > 100:
        raise DMARCRecordError("bad pct= value")
    return int(value)


def author_domain(data: bytes) -> tuple[str | None, str | None]:
    """The Author Domain of ``data`` (a CRLF message) and, when there is none, why:
    ``(domain, None)``, ``(None, "no From field")`` (DMARC ``none``) or ``(None, reason)``
    for a From that cannot be evaluated (``permerror``)."""
    header = data.split(b"\r\n\r\n", 1)[0]
    # Each From field's lines, joined once at the end: appending to a bytes value per
    # continuation line was quadratic in them.
    values: list[list[bytes]] = []
    current_is_from = False
    for line in header.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and values and current_is_from:
            values[-1].append(line)
            continue
        match = _FROM_FIELD.match(line)
        current_is_from = match is not None
        if match is not None:
            values.append([line[match.end() :]])
    if not values:
        return None, "no From field"
    if len(values) > 1:
        return None, "several From fields"
    text = b"".join(values[0]).decode("utf-8", "replace")
    domains = set()
    try:
        pairs = getaddresses([text])
    except RecursionError:  # the stdlib recurses into nested comments
        return None, "From field unreadable"
    for _name, address in pairs:
        local, at, domain = address.rpartition("@")
        label = a_label(domain) if at and local else None
        if label is None:
            return None, "From address without a domain"
        domains.add(label)
    if len(domains) != 1:
        return None, "From addresses in several domains" if domains else "no From address"
    return domains.pop(), None


def discover(lookup: DNSLookup, domain: str) -> Discovery:
    """Policy discovery for the Author Domain ``domain`` (§6.6.3). Blocks on ``lookup``."""
    org = organizational_domain(domain)
    for at in (domain, org) if org != domain else (domain,):
        try:
            records = [t for t in lookup.txt(f"_dmarc.{at}") if _VERSION.match(t)]
        except DNSTemporaryError as error:
            return Discovery(result="temperror", reason=f"DMARC lookup failed: {error}")
        if len(records) > 1:
            return Discovery(result="none", reason=f"several DMARC records at {at}")
        if records:
            try:
                return Discovery(record=parse_record(records[0]), at=at)
            except DMARCRecordError as error:
                return Discovery(result="permerror", reason=f"DMARC record at {at}: {error}")
    return Discovery(result="none", reason="no DMARC record")


def evaluate(
    author: str,
    found: Discovery,
    spf_result: str,
    spf_domain: str,
    dkim: Sequence[DKIMResult],
    rng: random.Random,
) -> DMARCOutcome:
    """The DMARC verdict for a message from ``author`` given what discovery found and
    what SPF and DKIM said. ``rng`` samples ``pct`` on failure."""
    record = found.record
    if record is None:
        return DMARCOutcome(result=found.result or "none", reason=found.reason)
    subdomain = found.at != author
    policy = record.sp if subdomain and record.sp is not None else record.p
    if spf_result == "pass" and spf_domain and aligned(author, spf_domain, record.aspf):
        return DMARCOutcome(result="pass", policy=policy, reason="SPF aligned")
    for signature in dkim:
        if (
            signature.result == "pass"
            and signature.domain
            and aligned(author, signature.domain, record.adkim)
        ):
            return DMARCOutcome(result="pass", policy=policy, reason="DKIM aligned")
    if record.pct < 100 and rng.random() * 100 >= record.pct:
        return DMARCOutcome(
            result="fail", policy=_LESS_STRICT[policy], reason=f"not sampled (pct={record.pct})"
        )
    return DMARCOutcome(result="fail", policy=policy, reason="no aligned identifier")
