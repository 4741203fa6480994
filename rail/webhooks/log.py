"""The webhook log: a line for every POST of an inbound message, and one when its job is final.

``webhook.attempt`` is written when a POST's outcome is decided: to which client's
webhook host (never the whole URL, whose path or query may hold a secret), what happened
(``result``, the reply: ``HTTP 503``, ``timeout after 30s``...), the attempt number,
``delay`` since the message was received and ``duration`` of the POST.
``webhook.final`` is written once the job's final state is on disk: ``delivered`` or
``failed`` after the POST that decided it, ``failed`` when the dispatcher quarantined the
message. Documented in docs/logging.md; payloads and signatures are never logged.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import urlsplit

from twisted.logger import Logger, LogLevel

from rail.inbound.model import WebhookJob, WebhookResult
from rail.logkv import emit
from rail.store.model import QUARANTINE_PREFIX
from rail.timefmt import rfc3339_or_none

__all__ = ["log_attempt", "log_final", "log_quarantined", "url_host"]

_log = Logger(namespace="rail.webhooks")


@lru_cache(maxsize=1024)  # one line per webhook outcome: a few URLs, over and over
def url_host(url: str) -> str:
    """The host of a webhook URL, ``?`` when it has none."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def _delay(now: float, job: WebhookJob) -> float:
    return round(max(0.0, now - job.received_at), 3)


def log_attempt(job: WebhookJob, result: WebhookResult, duration: float) -> None:
    """One ``webhook.attempt`` line."""
    emit(
        _log,
        "webhook.attempt",
        {
            "msg_id": job.message_id,
            "client": job.client,
            "host": url_host(job.url),
            "result": result.status,
            "reply": result.reply,
            "attempt": job.attempts + 1,
            "delay": _delay(result.attempted_at, job),
            "duration": round(max(0.0, duration), 3),
            "next_attempt": rfc3339_or_none(result.next_attempt_at),
        },
    )


def log_final(job: WebhookJob, result: WebhookResult) -> None:
    """A ``webhook.final`` line when ``result`` delivered or failed the job."""
    if result.status != "deferred":
        _final(job, result.status, result.reply, job.attempts + 1, result.attempted_at)


def log_quarantined(jobs: Iterable[WebhookJob], reason: str, now: float) -> None:
    """A ``webhook.final`` line, result ``failed``, for each of ``jobs``."""
    for job in jobs:
        _final(job, "failed", QUARANTINE_PREFIX + reason, job.attempts, now)


def _final(job: WebhookJob, result: str, reply: str, attempts: int, now: float) -> None:
    emit(
        _log,
        "webhook.final",
        {
            "msg_id": job.message_id,
            "client": job.client,
            "host": url_host(job.url),
            "result": result,
            "reply": reply,
            "attempts": attempts,
            "delay": _delay(now, job),
        },
        LogLevel.info if result == "delivered" else LogLevel.warn,
    )
