"""Key generations of one domain: which one signs a message, which ones stay published.

A generation is a pair of keys (ed25519 and rsa, RFC 8463 dual signing) with one name and
the moment it started signing. Rotation appends a generation; nothing is ever rewritten,
so a message queued before a rotation is still signed with the keys that were current
when it was accepted, and the records of those keys stay in DNS until no such message
is left. This module decides all of that from plain values; :mod:`rail.dkim.keys` keeps
the files.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from itertools import pairwise

import attrs

__all__ = [
    "STATE_VERSION",
    "Generation",
    "decode_state",
    "encode_state",
    "needed",
    "new_name",
    "signing_generation",
]

STATE_VERSION = 1

# A selector is the generation name plus one letter, and must stay one DNS label.
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,60}[a-z0-9])?")


@attrs.frozen
class Generation:
    """Keys that sign mail received from ``activated_at`` (Unix seconds) on, until the next
    generation's ``activated_at``."""

    name: str = attrs.field(validator=attrs.validators.matches_re(_NAME))
    activated_at: float

    @property
    def ed25519_selector(self) -> str:
        return f"{self.name}e"

    @property
    def rsa_selector(self) -> str:
        return f"{self.name}r"


def new_name(existing: Iterable[str], now: float) -> str:
    """``r`` and the UTC date (``r20261121``), then ``-2``, ``-3``... on later rotations
    the same day: readable in DNS, sortable, and unique within the domain."""
    taken = set(existing)
    base = "r" + datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
    name, suffix = base, 1
    while name in taken:
        suffix += 1
        name = f"{base}-{suffix}"
    return name


def signing_generation(generations: Sequence[Generation], received_at: float) -> Generation:
    """The generation that was current when a message was received: the last one activated
    at or before ``received_at``, or the first one for a message older than every key (a
    message queued before the keys existed is signed with the first keys made)."""
    chosen = generations[0]
    for generation in generations:
        if generation.activated_at <= received_at:
            chosen = generation
    return chosen


def needed(generations: Sequence[Generation], oldest_pending: float | None) -> list[Generation]:
    """The generations whose records must be published, oldest first.

    The newest always. An older generation G is still needed while a queued message might
    be signed with it: that is while the oldest pending message was received before the
    generation after G took over (``oldest_pending`` is None when nothing is queued).
    """
    if not generations:
        return []
    kept = [
        generation
        for generation, successor in pairwise(generations)
        if oldest_pending is not None and oldest_pending < successor.activated_at
    ]
    return [*kept, generations[-1]]


def encode_state(generations: Sequence[Generation]) -> bytes:
    """The per-domain state file: small, versioned and readable by an operator."""
    document = {
        "version": STATE_VERSION,
        "generations": [
            {"name": generation.name, "activated_at": generation.activated_at}
            for generation in generations
        ],
    }
    return (json.dumps(document, indent=2) + "\n").encode("ascii")


def decode_state(data: bytes) -> tuple[Generation, ...]:
    """Parse a state file; ``ValueError`` with a message for the operator if it is wrong.

    Strict, because a state file that Rail misreads would sign with the wrong key or
    withdraw a record that queued mail still needs.
    """
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not JSON ({e})") from None
    if not isinstance(document, dict) or set(document) != {"version", "generations"}:
        raise ValueError('expected an object with exactly "version" and "generations"')
    if document["version"] != STATE_VERSION:
        raise ValueError(f"unsupported state version {document['version']!r}")
    items = document["generations"]
    if not isinstance(items, list) or not items:
        raise ValueError('"generations" must be a non-empty list')
    generations = tuple(_generation(item, index) for index, item in enumerate(items))
    names = [generation.name for generation in generations]
    if len(set(names)) != len(names):
        raise ValueError("generation names are not unique")
    for earlier, later in pairwise(generations):
        if later.activated_at < earlier.activated_at:
            raise ValueError(f"generation {later.name!r} is activated before {earlier.name!r}")
    return generations


def _generation(item: object, index: int) -> Generation:
    where = f"generations[{index}]"
    if not isinstance(item, dict) or set(item) != {"name", "activated_at"}:
        raise ValueError(f'{where}: expected an object with exactly "name" and "activated_at"')
    name, activated_at = item["name"], item["activated_at"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{where}.name: not a generation name: {name!r}")
    if (
        isinstance(activated_at, bool)
        or not isinstance(activated_at, int | float)
        or not math.isfinite(activated_at)
    ):
        raise ValueError(f"{where}.activated_at: not a timestamp: {activated_at!r}")
    return Generation(name=name, activated_at=float(activated_at))
