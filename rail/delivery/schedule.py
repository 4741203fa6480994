"""When a deferred recipient is tried again, and when Rail gives up on it.

Rail's queue is the only retrier (STYLE.md rule 6), so the whole policy lives here as
pure functions of the clock reading, the failure count and an injected random source:
tests pin exact values, and the scheduler only stores what they return.

The delays grow roughly exponentially and then level off at the last step, the shape
RFC 5321 §4.5.4.1 asks for (at least 30 minutes between attempts in steady state, give up
after 4-5 days). Each delay is stretched or shrunk by a random factor so that a burst of
mail deferred by one busy site does not come back as one burst.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from rail.delivery.outcome import Reply

__all__ = [
    "DEFAULT_JITTER",
    "DEFAULT_MAX_AGE",
    "DEFAULT_RETRY",
    "expiry_reply",
    "next_attempt",
    "retry_delay",
]

DEFAULT_RETRY: tuple[float, ...] = (60, 300, 900, 1800, 3600, 7200, 14400)
"""Seconds before the 1st, 2nd, ... retry; the last step repeats (every 4 hours)."""

DEFAULT_MAX_AGE: float = 5 * 24 * 3600
"""A recipient undelivered this many seconds after acceptance bounces."""

DEFAULT_JITTER: float = 0.1
"""Each delay is multiplied by a factor drawn uniformly from [1 - jitter, 1 + jitter]."""


def retry_delay(
    failures: int,
    schedule: Sequence[float],
    rng: random.Random,
    jitter: float = DEFAULT_JITTER,
) -> float:
    """Seconds to wait after the ``failures``-th failed attempt (1 for the first failure).

    Past the end of ``schedule`` the last delay repeats: a site that is down for days is
    then tried at a steady pace instead of ever more rarely.
    """
    if failures < 1:
        raise ValueError(f"failures must be at least 1, got {failures}")
    if not schedule:
        raise ValueError("the retry schedule must not be empty")
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    base = schedule[min(failures, len(schedule)) - 1]
    return base * rng.uniform(1 - jitter, 1 + jitter)


def next_attempt(
    now: float,
    received_at: float,
    failures: int,
    schedule: Sequence[float],
    max_age: float,
    rng: random.Random,
    jitter: float = DEFAULT_JITTER,
) -> float | None:
    """When to try again after ``failures`` failed attempts, or None when it is too late.

    None means the recipient has been queued for ``max_age`` already and now bounces
    (with :func:`expiry_reply`). Otherwise the retry is never scheduled later than the
    expiry instant itself, so the last attempt happens at the deadline rather than a
    whole step before it; if that attempt fails, the next call returns None.
    """
    deadline = received_at + max_age
    if now >= deadline:
        return None
    return min(now + retry_delay(failures, schedule, rng, jitter), deadline)


def expiry_reply(last: Reply | None) -> Reply:
    """The bounce reason for a recipient that stayed deferred until ``max_age``.

    RFC 3463 X.4.7 "delivery time expired", as a permanent failure so that the
    recipient's disposition is ``bounced``. The last reply (usually a 4xx from the
    remote, or a local DNS or connection failure) stays in the text: RFC 3463 asks for
    the actual problem where possible, and the sender needs it to act. Its own 4.x.x
    code is not promoted to 5.x.x, since the remote never said the failure was permanent.
    """
    if last is None:
        text = "delivery time expired before any attempt was made"
    else:
        text = f"delivery time expired; last attempt: {last}"
    return Reply(554, "5.4.7", text, remote=False)
