"""MTA-STS (RFC 8461) as values: the ``_mta-sts`` TXT record, the policy file, MX matching.

Pure and strict. A policy Rail cannot read exactly as RFC 8461 §3.2 writes it is no policy
(:class:`PolicyError`), because a sender that guesses at a malformed ``enforce`` policy
either refuses mail the domain wants or accepts hosts it did not name. Parsing follows the
ABNF: ``key: value`` lines ended by CRLF (LF tolerated, as §3.2 allows), ``version`` first
and ``STSv1``, one ``mode`` and one ``max_age``, ``mx`` lines unless the mode is ``none``,
unknown keys ignored (§3.2: "extension" fields).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

import attrs

__all__ = [
    "MAX_AGE_LIMIT",
    "MAX_POLICY_SIZE",
    "PolicyError",
    "STSMode",
    "STSPolicy",
    "mx_matches",
    "parse_policy",
    "parse_sts_record",
]

MAX_AGE_LIMIT = 31557600
"""The largest ``max_age`` RFC 8461 §3.2 allows (about a year)."""

MAX_POLICY_SIZE = 64 * 1024
"""Octets of a policy file Rail reads (RFC 8461 §3.3 suggests 64 KiB)."""

STSMode = Literal["enforce", "testing", "none"]

_KEY = re.compile(r"[A-Za-z0-9_]{1,32}")
_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_DIGITS = re.compile(r"[0-9]{1,10}")


class PolicyError(ValueError):
    """The text is no valid MTA-STS record or policy; the message says why."""


@attrs.frozen
class STSPolicy:
    """One domain's MTA-STS policy, as fetched."""

    mode: STSMode
    max_age: int
    """Seconds the policy may be cached (0 to :data:`MAX_AGE_LIMIT`)."""
    mx: tuple[str, ...]
    """MX patterns, lower case: a host name, or ``*.`` and a domain (one left-most label)."""
    text: str = ""
    """The policy as fetched, for TLS-RPT's ``policy-string`` (RFC 8460 §4.4)."""

    def allows(self, host: str) -> bool:
        """Whether ``host`` (an MX host name) matches one of the ``mx`` patterns."""
        return any(mx_matches(pattern, host) for pattern in self.mx)

    def policy_strings(self) -> tuple[str, ...]:
        """The policy's lines, as TLS-RPT reports them."""
        return tuple(line.strip() for line in self.text.splitlines() if line.strip())


def parse_sts_record(texts: Iterable[str]) -> str | None:
    """The policy ``id`` of a domain's ``_mta-sts`` TXT records, None if it publishes none.

    Records not starting with ``v=STSv1`` are ignored; more than one such record is an
    error (RFC 8461 §3.1: "If multiple TXT records ... senders MUST assume no policy"),
    which the caller treats like none. Raises :class:`PolicyError` for a malformed record.
    """
    records = [t for t in texts if t.startswith("v=STSv1")]
    if not records:
        return None
    if len(records) > 1:
        raise PolicyError("more than one v=STSv1 TXT record")
    fields: dict[str, str] = {}
    for part in records[0].split(";"):
        part = part.strip(" \t")
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise PolicyError(f"malformed field {part!r} in the _mta-sts record")
        fields.setdefault(key.strip(), value.strip())
    if fields.get("v") != "STSv1":
        raise PolicyError("the _mta-sts record does not start with v=STSv1")
    ident = fields.get("id")
    if ident is None or not _ID.fullmatch(ident):
        raise PolicyError("the _mta-sts record has no valid id (1-32 letters and digits)")
    return ident


def _valid_mx(pattern: str) -> bool:
    name = pattern[2:] if pattern.startswith("*.") else pattern
    labels = name.split(".")
    return len(labels) >= 2 and len(name) <= 253 and all(_LABEL.fullmatch(x) for x in labels)


def parse_policy(text: str) -> STSPolicy:
    """The policy in ``text`` (the body of ``/.well-known/mta-sts.txt``), strictly."""
    values: dict[str, list[str]] = {}
    first: str | None = None
    for raw in text.split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not _KEY.fullmatch(key):
            raise PolicyError(f"malformed policy line {line[:80]!r}")
        if first is None:
            first = key
        values.setdefault(key, []).append(value.strip(" \t"))
    if first != "version" or values.get("version") != ["STSv1"]:
        raise PolicyError("the policy does not start with version: STSv1")
    modes = values.get("mode", [])
    if len(modes) != 1 or modes[0] not in ("enforce", "testing", "none"):
        raise PolicyError("the policy needs one mode: enforce, testing or none")
    mode: STSMode = modes[0]  # type: ignore[assignment]
    ages = values.get("max_age", [])
    if len(ages) != 1 or not _DIGITS.fullmatch(ages[0]):
        raise PolicyError("the policy needs one max_age in seconds")
    max_age = int(ages[0])
    if max_age > MAX_AGE_LIMIT:
        raise PolicyError(f"max_age {max_age} is above {MAX_AGE_LIMIT}")
    mx = tuple(p.lower() for p in values.get("mx", []))
    for pattern in mx:
        if not _valid_mx(pattern):
            raise PolicyError(f"malformed mx pattern {pattern[:80]!r}")
    if not mx and mode != "none":
        raise PolicyError(f"a policy in {mode} mode needs mx lines")
    return STSPolicy(mode=mode, max_age=max_age, mx=mx, text=text)


def mx_matches(pattern: str, host: str) -> bool:
    """Whether MX host ``host`` matches policy ``pattern`` (RFC 8461 §4.1).

    A ``*.`` wildcard stands for exactly one left-most label: ``*.example.com`` matches
    ``mx.example.com``, not ``example.com`` nor ``a.b.example.com``. Case and a trailing
    dot do not matter.
    """
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if pattern.startswith("*."):
        label, dot, rest = host.partition(".")
        return bool(label) and bool(dot) and rest == pattern[2:]
    return host == pattern
