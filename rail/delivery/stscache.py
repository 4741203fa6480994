"""The MTA-STS policy cache's decisions and its file format (RFC 8461 §5.1), pure.

A domain's entry is a :class:`CachedPolicy` (the policy fetched for a TXT ``id``, usable
until ``max_age`` after the fetch) or a :class:`NoPolicy` (checked, nothing usable).
:func:`freshness` says, per delivery and in O(1), whether an entry can be used as it is
(``fresh``), used while a refresh runs in the background (``stale``: its TXT record was
last checked :data:`RECHECK` seconds ago, or half its ``max_age`` is gone, so it is
refreshed before it expires), or must be looked up first (``missing``).
:func:`after_txt` and :func:`after_fetch` fold a lookup's result into the entry: a
cached, unexpired policy survives a missing or failing TXT record and a failed fetch
(RFC 8461 §5.1, so an attacker who blocks DNS or HTTPS cannot strip it), and is
replaced only by a successful fetch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from rail.delivery.stspolicy import PolicyError, STSPolicy, parse_policy

__all__ = [
    "RECHECK",
    "CachedPolicy",
    "Entry",
    "NoPolicy",
    "after_fetch",
    "after_txt",
    "dump_entries",
    "freshness",
    "load_entries",
]

RECHECK = 900.0
"""Seconds after which a domain's ``_mta-sts`` TXT record is looked up again."""

_FORMAT = 1


@attrs.frozen
class CachedPolicy:
    """A fetched policy, the TXT ``id`` it was fetched for, and when."""

    policy: STSPolicy
    policy_id: str
    fetched_at: float
    checked_at: float

    @property
    def expires_at(self) -> float:
        return self.fetched_at + self.policy.max_age

    def usable(self, now: float) -> bool:
        return now < self.expires_at


@attrs.frozen
class NoPolicy:
    """The domain was checked at ``checked_at`` and has no usable policy."""

    checked_at: float


Entry = CachedPolicy | NoPolicy


def freshness(entry: Entry | None, now: float) -> Literal["fresh", "stale", "missing"]:
    """Whether ``entry`` can be used now; see the module docstring."""
    if entry is None:
        return "missing"
    if isinstance(entry, NoPolicy):
        return "fresh" if now - entry.checked_at < RECHECK else "missing"
    if not entry.usable(now):
        return "missing"
    half_gone = now >= entry.fetched_at + entry.policy.max_age / 2
    if half_gone or now - entry.checked_at >= RECHECK:
        return "stale"
    return "fresh"


def after_txt(entry: Entry | None, txt_id: str | None, now: float) -> Entry | None:
    """The entry after a TXT lookup found ``txt_id`` (None: no valid record, or the
    lookup failed); None means "fetch the policy now"."""
    if isinstance(entry, CachedPolicy) and entry.usable(now):
        if txt_id is None:
            return attrs.evolve(entry, checked_at=now)
        half_gone = now >= entry.fetched_at + entry.policy.max_age / 2
        if txt_id == entry.policy_id and not half_gone:
            return attrs.evolve(entry, checked_at=now)
        return None
    if txt_id is None:
        return NoPolicy(now)
    return None


def after_fetch(entry: Entry | None, txt_id: str, policy: STSPolicy | None, now: float) -> Entry:
    """The entry after fetching the policy for ``txt_id``: the new policy, or (the fetch
    failed, ``policy`` None) the cached one while it lasts."""
    if policy is not None:
        return CachedPolicy(policy, txt_id, now, now)
    if isinstance(entry, CachedPolicy) and entry.usable(now):
        return attrs.evolve(entry, checked_at=now)
    return NoPolicy(now)


def dump_entries(entries: Mapping[str, Entry]) -> bytes:
    """The cached policies as JSON (``NoPolicy`` entries are not worth keeping)."""
    policies = {
        domain: {
            "id": e.policy_id,
            "fetched_at": e.fetched_at,
            "text": e.policy.text,
        }
        for domain, e in entries.items()
        if isinstance(e, CachedPolicy)
    }
    return json.dumps({"format": _FORMAT, "policies": policies}, sort_keys=True).encode()


def load_entries(data: bytes, now: float) -> dict[str, CachedPolicy]:
    """The unexpired policies of a file written by :func:`dump_entries`; anything
    malformed is skipped (the policy is then fetched again), never trusted."""
    try:
        document: Any = json.loads(data)
    except ValueError:
        return {}
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        return {}
    policies = document.get("policies")
    if not isinstance(policies, dict):
        return {}
    loaded: dict[str, CachedPolicy] = {}
    for domain, item in policies.items():
        try:
            ident, fetched_at, text = item["id"], float(item["fetched_at"]), item["text"]
            if not isinstance(ident, str) or not isinstance(text, str) or fetched_at > now:
                continue
            entry = CachedPolicy(parse_policy(text), ident, fetched_at, fetched_at)
        except (KeyError, TypeError, ValueError, PolicyError):
            continue
        if entry.usable(now):
            loaded[str(domain)] = entry
    return loaded
