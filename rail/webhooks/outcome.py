"""What one webhook POST means: delivered, retried when, or failed for good.

Pure. The HTTP client reports an :data:`Attempt` (an answer, a temporary failure to reach
the application, or a refusal by Rail's own policy); :func:`decide` turns it into the
:class:`WebhookResult` the dispatcher records:

=====================================  ==========================================
2xx                                    delivered
3xx                                    failed (redirects are never followed)
408, 429                               retried; ``Retry-After`` honoured
other 4xx                              failed
5xx and anything else                  retried; ``Retry-After`` honoured
timeout, connection, TLS, DNS errors   retried on the ``retry`` schedule
address or URL refused by policy       failed
=====================================  ==========================================

A retry is never planned later than ``received_at + max_age``; a failure at or after
that instant fails the job ("expired"). The stored reply text never quotes the
application's own reason phrase or body: it goes into the DSN the sender receives.
"""

from __future__ import annotations

import http
import random
from email.utils import parsedate_to_datetime
from typing import Literal

import attrs

from rail.delivery.schedule import next_attempt
from rail.inbound.model import WebhookJob, WebhookResult

__all__ = [
    "Answered",
    "Attempt",
    "Refused",
    "Unreachable",
    "WebhookPolicy",
    "decide",
    "describe_answer",
    "judge",
    "parse_retry_after",
]

MAX_RETRY_AFTER = 24 * 3600.0
"""The longest ``Retry-After`` honoured; a longer one is cut to this."""
MIN_RETRY_AFTER = 1.0
"""``Retry-After: 0`` (or a date in the past) waits this long, not zero."""


@attrs.frozen
class Answered:
    """The application answered with ``code``; ``retry_after`` is the raw header value."""

    code: int
    retry_after: str | None = None


@attrs.frozen
class Unreachable:
    """No answer: timeout, connection refused or reset, TLS or DNS failure. Retried."""

    reason: str


@attrs.frozen
class Refused:
    """Rail would not send it: the URL or an address is not allowed. Never retried."""

    reason: str


Attempt = Answered | Unreachable | Refused


@attrs.frozen
class WebhookPolicy:
    """``schedule`` delays (the last repeats) with ``jitter``, until ``max_age`` after
    receipt; ``Retry-After`` values up to ``max_retry_after`` replace the delay."""

    schedule: tuple[float, ...]
    max_age: float
    jitter: float = 0.1
    max_retry_after: float = MAX_RETRY_AFTER


def describe_answer(code: int) -> str:
    """``HTTP 503 Service Unavailable`` (the standard phrase, not the application's)."""
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        return f"HTTP {code}"
    return f"HTTP {code} {phrase}"


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait per a ``Retry-After`` value (delay-seconds or HTTP-date), or None
    when absent or unreadable. Not bounded here."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None  # HTTP-dates are GMT; a zone-less date is not one
    return when.timestamp() - now


def _expired(reply: str, policy: WebhookPolicy) -> str:
    days = policy.max_age / 86400
    age = f"{days:g}d" if days >= 1 else f"{policy.max_age:g}s"
    return f"expired: no 2xx within {age}; last attempt: {reply}"


Verdict = tuple[Literal["delivered", "deferred", "failed"], str, float | None]
"""``(status, reply, next_attempt_at)``; the time is set for ``deferred`` only."""


def judge(
    attempt: Attempt,
    *,
    since: float,
    attempts: int,
    now: float,
    policy: WebhookPolicy,
    rng: random.Random,
) -> Verdict:
    """What ``attempt`` (ended at ``now``) means for a job made at ``since`` and tried
    ``attempts`` times before: the one rule for every kind of webhook job."""
    retry_after: float | None = None
    if isinstance(attempt, Refused):
        return "failed", attempt.reason, None
    if isinstance(attempt, Unreachable):
        reply = attempt.reason
    else:
        code = attempt.code
        reply = describe_answer(code)
        if 200 <= code < 300:
            return "delivered", reply, None
        if 300 <= code < 400:
            return "failed", f"redirect not followed ({reply})", None
        if 400 <= code < 500 and code not in (408, 429):
            return "failed", reply, None
        retry_after = parse_retry_after(attempt.retry_after, now)
    deadline = since + policy.max_age
    when: float | None
    if retry_after is not None:
        delay = min(max(retry_after, MIN_RETRY_AFTER), policy.max_retry_after)
        when = None if now >= deadline else min(now + delay, deadline)
    else:
        when = next_attempt(
            now, since, attempts + 1, policy.schedule, policy.max_age, rng, policy.jitter
        )
    if when is None:
        return "failed", _expired(reply, policy), None
    return "deferred", reply, when


def decide(
    job: WebhookJob,
    attempt: Attempt,
    *,
    now: float,
    policy: WebhookPolicy,
    rng: random.Random,
) -> WebhookResult:
    """The result to record for ``job`` after ``attempt`` ended at ``now``."""
    status, reply, when = judge(
        attempt, since=job.received_at, attempts=job.attempts, now=now, policy=policy, rng=rng
    )
    return WebhookResult(
        message_id=job.message_id,
        client=job.client,
        attempted_at=now,
        status=status,
        reply=reply,
        next_attempt_at=when,
    )
