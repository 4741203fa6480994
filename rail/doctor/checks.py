"""The doctor's verdicts: each compares what Rail would publish with what was found.

Pure: the found side comes in as plain values (:class:`Lookup`, :class:`Fetch`,
:class:`PortAnswer`) gathered by :mod:`rail.doctor.probe`; each function returns one
:class:`Check` row. The statuses mean:

- ``OK``: what the world sees matches what Rail needs.
- ``WARN``: mail flows, but something is weaker or staler than Rail would have it
  (a DMARC policy differing from Rail's, a missing TLS-RPT record, an extra MX host).
- ``FAIL``: mail is refused, lost, misrouted or fails authentication somewhere
  (no MX to Rail, SPF not naming Rail's addresses, a DKIM key that does not verify,
  no PTR, a closed port, an expiring certificate), or the lookup itself failed.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from typing import Any, Generic, Literal, TypeVar

import attrs

from rail.dns.records import CAA, MX

__all__ = [
    "FAIL",
    "OK",
    "WARN",
    "Check",
    "Fetch",
    "Lookup",
    "PortAnswer",
    "Status",
    "caa_identities",
    "caa_identity",
    "check_addresses",
    "check_caa",
    "check_dkim",
    "check_dmarc",
    "check_mta_sts_policy",
    "check_mta_sts_txt",
    "check_mx",
    "check_port",
    "check_ptr",
    "check_spf",
    "check_tls_rpt",
    "dkim_key",
    "failed",
    "policy_fields",
    "tag_value",
]

Status = Literal["OK", "WARN", "FAIL"]
OK: Status = "OK"
WARN: Status = "WARN"
FAIL: Status = "FAIL"

T = TypeVar("T")


@attrs.frozen
class Check:
    """One line of the report."""

    check: str
    """What was checked: ``mx``, ``spf``, ``dkim <selector>``, ``port 25 <address>``..."""
    domain: str
    """The local domain, or Rail's host name for checks of the host."""
    status: Status
    expected: str
    found: str

    def to_json(self) -> dict[str, str]:
        return {
            "check": self.check,
            "domain": self.domain,
            "status": self.status,
            "expected": self.expected,
            "found": self.found,
        }


@attrs.frozen
class Lookup(Generic[T]):
    """The answer to one DNS question: the records of the type asked for, or why none."""

    records: tuple[T, ...] = ()
    nxdomain: bool = False
    """The name does not exist (as opposed to existing without records of this type)."""
    error: str | None = None
    """The question got no usable answer: ``timeout``, ``SERVFAIL``, ``REFUSED``..."""

    def describe_empty(self) -> str:
        return "no such name (NXDOMAIN)" if self.nxdomain else "no record"


@attrs.frozen
class Fetch:
    """An HTTPS fetch: the body, or why there is none."""

    text: str | None = None
    error: str | None = None


@attrs.frozen
class PortAnswer:
    """What a TCP connection to a port gave: ``answered`` (a banner or a TLS handshake,
    described by ``detail``) or not (refused, timed out: ``detail`` says which)."""

    answered: bool
    detail: str
    banner_ok: bool = True
    """False when something answered, but not what Rail would (say, no ``220`` greeting)."""


def failed(check: str, domain: str, expected: str, lookup: Lookup[Any]) -> Check | None:
    """The FAIL row for a lookup that got no answer, else None."""
    if lookup.error is None:
        return None
    return Check(check, domain, FAIL, expected, f"lookup failed: {lookup.error}")


def _mx_text(mx: MX) -> str:
    return f"{mx.preference} {mx.exchange}"


def check_mx(domain: str, expected: Sequence[MX], found: Lookup[MX]) -> Check:
    """Rail's host must be among the MX hosts, and best placed; others are a WARN (mail
    delivered there bypasses Rail's checks and webhooks), as is a node of ``dns.nodes``
    missing from them (it gets no mail)."""
    want = ", ".join(_mx_text(m) for m in expected)
    bad = failed("mx", domain, want, found)
    if bad is not None:
        return bad
    if not found.records:
        return Check("mx", domain, FAIL, want, found.describe_empty())
    records = sorted(found.records, key=lambda m: (m.preference, m.exchange))
    text = ", ".join(_mx_text(m) for m in records)
    hosts = {m.exchange.lower().rstrip(".") for m in records}
    ours = {m.exchange for m in expected}
    if not hosts & ours:
        return Check("mx", domain, FAIL, want, text)
    best = min(m.preference for m in records)
    preferred = {m.exchange.lower().rstrip(".") for m in records if m.preference == best}
    if hosts - ours or ours - hosts or not preferred & ours:
        return Check("mx", domain, WARN, want, text)
    return Check("mx", domain, OK, want, text)


def _normal_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def check_addresses(kind: str, host: str, expected: Sequence[str], found: Lookup[str]) -> Check:
    """``kind`` is ``a`` or ``aaaa``. Every address Rail publishes must be there (FAIL);
    others are a WARN (senders may connect to a machine that is not Rail)."""
    want = ", ".join(expected) or "none"
    bad = failed(kind, host, want, found)
    if bad is not None:
        return bad
    have = sorted({_normal_address(a) for a in found.records})
    text = ", ".join(have) or found.describe_empty()
    if not expected:
        if have:
            # dns.ipv4/ipv6 unset: Rail publishes no address of this family to compare with.
            return Check(kind, host, WARN, "none (dns.ipv4/dns.ipv6 not set)", text)
        return Check(kind, host, OK, want, text)
    if set(expected) - set(have):
        return Check(kind, host, FAIL, want, text)
    if set(have) - set(expected):
        return Check(kind, host, WARN, want, text)
    return Check(kind, host, OK, want, text)


def _starting(records: Sequence[str], prefix: str) -> list[str]:
    """The records whose first word is ``prefix`` (case-insensitive), as RFC 7208 §4.5
    and RFC 7489 §6.6.3 select them."""
    out = []
    for record in records:
        head = record.strip().split(";", 1)[0].split(" ", 1)[0].strip()
        if head.lower() == prefix.lower():
            out.append(record.strip())
    return out


def _spf_covers(record: str, address: str, hostname: str) -> bool | None:
    """Whether ``record`` passes mail from ``address`` (Rail's): True, False, or None
    when it depends on other records (``include:``, ``redirect=``, ``exists:``...)."""
    ip = ipaddress.ip_address(address)
    unknown = False
    for term in record.split()[1:]:
        qualifier = "+"
        if term[:1] in "+-~?":
            qualifier, term = term[0], term[1:]
        name, _, value = term.partition(":")
        name = name.lower()
        matched: bool | None = False
        if name in ("ip4", "ip6") and value:
            try:
                matched = ip in ipaddress.ip_network(value, strict=False)
            except ValueError:
                matched = False
        elif name == "mx" and not value:
            matched = True  # the MX check says whether the MX is Rail's host
        elif name == "a" and value.lower().rstrip(".") == hostname:
            matched = True
        elif name == "all":
            matched = True
        elif name.startswith("redirect=") or name in ("include", "exists", "ptr", "a", "mx"):
            matched = None
        elif "=" in name:
            continue  # a modifier (exp=) decides nothing
        if matched is None:
            unknown = True
        elif matched:
            if qualifier != "+":
                return None if unknown else False
            return True
    return None if unknown else False


def check_spf(
    domain: str, expected: str, addresses: Sequence[str], hostname: str, found: Lookup[str]
) -> Check:
    """One SPF record that passes every public address of Rail: OK even if it differs from
    Rail's own; FAIL if there is none, several (a permerror), or it fails an address;
    WARN when it cannot be told without following ``include:`` or ``redirect=``."""
    bad = failed("spf", domain, expected, found)
    if bad is not None:
        return bad
    records = _starting(found.records, "v=spf1")
    if not records:
        return Check("spf", domain, FAIL, expected, "no SPF record")
    if len(records) > 1:
        return Check("spf", domain, FAIL, expected, " | ".join(records) + " (several: permerror)")
    record = records[0]
    if record == expected:
        return Check("spf", domain, OK, expected, record)
    if not addresses:
        note = f"{record} (dns.ipv4/dns.ipv6 not set: cannot tell whether it passes Rail)"
        return Check("spf", domain, WARN, expected, note)
    verdicts = [_spf_covers(record, a, hostname) for a in addresses]
    if any(v is False for v in verdicts):
        missing = [a for a, v in zip(addresses, verdicts, strict=True) if v is False]
        return Check(
            "spf", domain, FAIL, expected, f"{record} (does not pass {', '.join(missing)})"
        )
    if any(v is None for v in verdicts):
        return Check("spf", domain, WARN, expected, f"{record} (depends on other records)")
    return Check("spf", domain, OK, expected, record)


def tag_value(record: str, tag: str) -> str | None:
    """The value of ``tag`` in a ``tag=value; ...`` record (DKIM, DMARC, MTA-STS, TLS-RPT),
    whitespace removed; None if absent."""
    for part in record.split(";"):
        name, eq, value = part.partition("=")
        if eq and name.strip().lower() == tag:
            return "".join(value.split())
    return None


def dkim_key(record: str) -> str | None:
    """The public key (``p=``) of a DKIM record."""
    return tag_value(record, "p")


def check_dkim(domain: str, selector: str, expected: str, found: Lookup[str]) -> Check:
    """The selector's key must be the one Rail signs with: a missing or different key
    makes every signature with it fail (FAIL)."""
    check = f"dkim {selector}"
    shown = _shorten(expected)
    bad = failed(check, domain, shown, found)
    if bad is not None:
        return bad
    if not found.records:
        return Check(check, domain, FAIL, shown, found.describe_empty())
    want = dkim_key(expected)
    keys = [dkim_key(r) for r in found.records]
    text = " | ".join(_shorten(r) for r in found.records)
    if len(found.records) == 1 and keys[0] == want:
        return Check(check, domain, OK, shown, text)
    if want in keys:
        return Check(check, domain, FAIL, shown, f"{text} (several records)")
    return Check(check, domain, FAIL, shown, f"{text} (key differs)")


def _shorten(text: str, keep: int = 60) -> str:
    return text if len(text) <= keep else text[: keep - 3] + "..."


def check_dmarc(domain: str, expected: str, found: Lookup[str]) -> Check:
    """No DMARC record (or several) is a FAIL: large receivers refuse or junk bulk mail
    without one. One that differs from Rail's (another ``p=``, ``rua=``) is a WARN."""
    bad = failed("dmarc", domain, expected, found)
    if bad is not None:
        return bad
    records = _starting(found.records, "v=DMARC1")
    if not records:
        return Check("dmarc", domain, FAIL, expected, found.describe_empty())
    if len(records) > 1:
        return Check("dmarc", domain, FAIL, expected, " | ".join(records) + " (several)")
    record = records[0]
    same = all(
        tag_value(record, tag) == tag_value(expected, tag) for tag in ("p", "rua", "sp", "pct")
    )
    return Check("dmarc", domain, OK if same else WARN, expected, record)


def check_mta_sts_txt(domain: str, expected: str, found: Lookup[str]) -> Check:
    """The ``_mta-sts`` record: missing is a WARN (senders just do not use MTA-STS); an
    ``id`` other than Rail's is a WARN too (senders keep a policy they fetched before
    and may not fetch the current one)."""
    bad = failed("mta-sts", domain, expected, found)
    if bad is not None:
        return bad
    records = _starting(found.records, "v=STSv1")
    if not records:
        return Check("mta-sts", domain, WARN, expected, found.describe_empty())
    if len(records) > 1:
        return Check("mta-sts", domain, FAIL, expected, " | ".join(records) + " (several)")
    record = records[0]
    if tag_value(record, "id") != tag_value(expected, "id"):
        return Check("mta-sts", domain, WARN, expected, f"{record} (id differs)")
    return Check("mta-sts", domain, OK, expected, record)


def policy_fields(text: str) -> dict[str, list[str]]:
    """An MTA-STS policy's ``key: value`` lines (RFC 8461 §3.2), values by key."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            fields.setdefault(key.strip().lower(), []).append(value.strip())
    return fields


def _mx_matches(pattern: str, host: str) -> bool:
    pattern = pattern.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host


def check_mta_sts_policy(domain: str, expected: str, hostname: str, found: Fetch) -> Check:
    """The policy at ``https://mta-sts.<domain>/.well-known/mta-sts.txt``. A policy in
    ``enforce`` mode whose ``mx`` lines do not match Rail's host makes senders refuse to
    deliver (FAIL), as does a published ``_mta-sts`` record with no policy to fetch
    (FAIL); any other difference from Rail's policy is a WARN."""
    want = expected.replace("\r\n", "; ").rstrip("; ")
    if found.text is None:
        return Check("mta-sts policy", domain, FAIL, want, f"fetch failed: {found.error}")
    fields = policy_fields(found.text)
    text = "; ".join(line.strip() for line in found.text.splitlines() if line.strip())
    mode = (fields.get("mode") or [""])[0].lower()
    if fields.get("version") != ["STSv1"] or mode not in ("enforce", "testing", "none"):
        return Check("mta-sts policy", domain, FAIL, want, f"{text} (not a policy)")
    if mode == "enforce" and not any(_mx_matches(p, hostname) for p in fields.get("mx", [])):
        return Check("mta-sts policy", domain, FAIL, want, f"{text} (mx does not match {hostname})")
    if policy_fields(expected) != fields:
        return Check("mta-sts policy", domain, WARN, want, text)
    return Check("mta-sts policy", domain, OK, want, text)


def check_tls_rpt(domain: str, expected: str | None, found: Lookup[str]) -> Check:
    """TLS-RPT (``_smtp._tls``) only asks for reports: missing or different is a WARN.
    When Rail publishes none (``dns.tls_rpt`` null), anything found is fine."""
    want = expected or "none (dns.tls_rpt not set)"
    bad = failed("tls-rpt", domain, want, found)
    if bad is not None:
        return bad
    records = _starting(found.records, "v=TLSRPTv1")
    text = " | ".join(records) or found.describe_empty()
    if expected is None:
        return Check("tls-rpt", domain, OK, want, text)
    if len(records) != 1:
        return Check("tls-rpt", domain, WARN, want, text)
    same = tag_value(records[0], "rua") == tag_value(expected, "rua")
    return Check("tls-rpt", domain, OK if same else WARN, want, text)


def caa_identity(value: str) -> str:
    """The CA domain of a CAA ``issue`` value, parameters dropped (RFC 8659 §4.2)."""
    return value.split(";", 1)[0].strip().lower()


def caa_identities(directory: str) -> tuple[str, ...]:
    """The CAA identities an ACME directory document names (RFC 8555 §7.1.1,
    ``meta.caaIdentities``); none when it names none or is not such a document."""
    try:
        document = json.loads(directory)
    except ValueError:
        return ()
    meta = document.get("meta") if isinstance(document, dict) else None
    names = meta.get("caaIdentities") if isinstance(meta, dict) else None
    if not isinstance(names, list):
        return ()
    return tuple(n.lower() for n in names if isinstance(n, str))


def _caa_text(records: Sequence[CAA]) -> str:
    return ", ".join(f'{r.flags} {r.tag} "{r.value}"' for r in records)


def check_caa(
    domain: str,
    expected: Sequence[CAA],
    acme_identities: Sequence[str] | None,
    found: Lookup[CAA],
    owner: str | None,
) -> Check:
    """CAA records (the closest found at or above ``domain``, at ``owner``). With ACME
    (``acme_identities`` given, the CA's identities from ``dns.caa`` or its directory;
    empty when not known), ``issue`` records that name none of the CA's identities forbid renewal
    (FAIL); unknown identities with restricting records are a WARN. Without ACME only a
    difference from what Rail publishes is reported (WARN)."""
    want = _caa_text(expected) or ("none" if acme_identities is None else "none, or the CA's")
    bad = failed("caa", domain, want, found)
    if bad is not None:
        return bad
    text = _caa_text(found.records) or "none"
    if owner is not None and owner != domain and found.records:
        text += f" (at {owner})"
    issuers = {caa_identity(r.value) for r in found.records if r.tag.lower() == "issue"}
    critical = [r for r in found.records if r.flags & 0x80 and r.tag.lower() not in _KNOWN_TAGS]
    if critical:
        return Check("caa", domain, FAIL, want, f"{text} (unknown critical tag)")
    if acme_identities is not None:
        if not issuers:
            return Check("caa", domain, OK, want, text)
        if not acme_identities:
            return Check(
                "caa", domain, WARN, want, f"{text} (set dns.caa to the ACME CA's identity)"
            )
        if issuers & {i.lower() for i in acme_identities}:
            return Check("caa", domain, OK, want, text)
        return Check("caa", domain, FAIL, want, f"{text} (forbids the ACME CA)")
    if {(r.tag, r.value) for r in found.records} != {(r.tag, r.value) for r in expected}:
        return Check("caa", domain, WARN, want, text)
    return Check("caa", domain, OK, want, text)


_KNOWN_TAGS = frozenset({"issue", "issuewild", "iodef", "issuemail", "contactemail"})


def check_ptr(
    address: str, hostname: str, names: Lookup[str], forward: Sequence[Lookup[str]]
) -> Check:
    """The PTR of a public address must name Rail's host, and that name must resolve
    back to the address (forward-confirmed): receivers refuse or junk mail from
    addresses without it (FAIL). ``forward[i]`` holds the addresses of ``names.records[i]``.
    A PTR to another name that does confirm is a WARN (the HELO name differs)."""
    check = f"ptr {address}"
    bad = failed(check, hostname, hostname, names)
    if bad is not None:
        return bad
    if not names.records:
        return Check(check, hostname, FAIL, hostname, names.describe_empty())
    confirmed = []
    for name, lookup in zip(names.records, forward, strict=True):
        if _normal_address(address) in {_normal_address(a) for a in lookup.records}:
            confirmed.append(name.lower().rstrip("."))
    text = ", ".join(names.records)
    if hostname in confirmed:
        return Check(check, hostname, OK, hostname, f"{text} (forward-confirmed)")
    if confirmed:
        return Check(check, hostname, WARN, hostname, f"{text} (forward-confirmed, not {hostname})")
    return Check(check, hostname, FAIL, hostname, f"{text} (not forward-confirmed)")


def check_port(port: int, address: str, hostname: str, what: str, answer: PortAnswer) -> Check:
    """Whether ``address:port`` answers as Rail would (``what`` says how: an SMTP
    greeting, a TLS handshake). Closed or silent is a FAIL; an unexpected answer a WARN."""
    check = f"port {port} {address}"
    if not answer.answered:
        return Check(check, hostname, FAIL, what, answer.detail)
    return Check(check, hostname, OK if answer.banner_ok else WARN, what, answer.detail)
