"""The event log: a line for every POST of an event, and one when the event is final.

``event.attempt`` is written when a POST's outcome is decided: the event (``event_id``,
``type``), its message and client, the application's host (never the whole URL, whose
path or query may hold a secret), what happened (``result``, the reply), the attempt
number, ``delay`` since the event happened and ``duration`` of the POST. ``event.final``
is written once the event's final state is on disk: ``delivered`` or ``failed`` after the
POST that decided it, ``failed`` when it could not be sent at all (no URL for the client)
or was quarantined. Documented in docs/logging.md; payloads and signatures are never
logged.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.logger import Logger, LogLevel

from rail.events.jobs import EventJob, EventResult
from rail.logkv import emit
from rail.store.model import QUARANTINE_PREFIX
from rail.timefmt import rfc3339_or_none
from rail.webhooks.log import url_host

__all__ = ["log_attempt", "log_final", "log_quarantined"]

_log = Logger(namespace="rail.events")


def _delay(now: float, job: EventJob) -> float:
    return round(max(0.0, now - job.created_at), 3)


def log_attempt(job: EventJob, url: str, result: EventResult, duration: float) -> None:
    """One ``event.attempt`` line."""
    emit(
        _log,
        "event.attempt",
        {
            "event_id": job.id,
            "type": job.type,
            "msg_id": job.message_id,
            "client": job.client,
            "host": url_host(url),
            "result": result.status,
            "reply": result.reply,
            "attempt": job.attempts + 1,
            "delay": _delay(result.attempted_at, job),
            "duration": round(max(0.0, duration), 3),
            "next_attempt": rfc3339_or_none(result.next_attempt_at),
        },
    )


def log_final(job: EventJob, url: str | None, result: EventResult, attempts: int) -> None:
    """An ``event.final`` line when ``result`` delivered or failed the event."""
    if result.status != "deferred":
        _final(job, url, result.status, result.reply, attempts, result.attempted_at)


def log_quarantined(jobs: Iterable[EventJob], reason: str, now: float) -> None:
    """An ``event.final`` line, result ``failed``, for each of ``jobs``."""
    for job in jobs:
        _final(job, None, "failed", QUARANTINE_PREFIX + reason, job.attempts, now)


def _final(
    job: EventJob, url: str | None, result: str, reply: str, attempts: int, now: float
) -> None:
    emit(
        _log,
        "event.final",
        {
            "event_id": job.id,
            "type": job.type,
            "msg_id": job.message_id,
            "client": job.client,
            "host": url_host(url) if url is not None else None,
            "result": result,
            "reply": reply,
            "attempts": attempts,
            "delay": _delay(now, job),
        },
        LogLevel.info if result == "delivered" else LogLevel.warn,
    )
