"""The delivery log: a line per recipient for every attempt, and one when its fate is final.

``delivery.attempt`` is written when an attempt's outcome is decided (before the store
has it on disk), one line per recipient of the transaction, with where it went (MX host,
address, TLS version), what happened (``result``, the reply) and when (attempt number,
``delay`` since acceptance, ``duration`` of the attempt). ``delivery.final`` is written
once a recipient's final state is on disk: ``sent`` or ``bounced`` after the attempt that
decided it, ``failed`` when the scheduler quarantined its message. Field names and
meanings are documented in docs/logging.md; message bodies are never logged.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from twisted.logger import Logger, LogLevel

from rail.logkv import emit
from rail.store.model import QUARANTINE_PREFIX, DeliveryJob, JobResult
from rail.timefmt import rfc3339_or_none

__all__ = ["NO_PEER", "Peer", "log_attempt", "log_final", "log_quarantined"]

_log = Logger(namespace="rail.delivery")


@attrs.frozen
class Peer:
    """Where an attempt went: the MX host's name, the address connected to, and the TLS
    version of the connection (``"none"`` in plaintext); None for what was never reached
    (no route: all None; no connection: no TLS version)."""

    mx: str | None = None
    address: str | None = None
    tls: str | None = None


NO_PEER = Peer()


def _delay(now: float, job: DeliveryJob) -> float:
    return round(max(0.0, now - job.received_at), 3)


def log_attempt(job: DeliveryJob, result: JobResult, peer: Peer, duration: float) -> None:
    """One ``delivery.attempt`` line per recipient of ``job``."""
    now = result.attempted_at
    delay = _delay(now, job)
    duration = round(max(0.0, duration), 3)
    for recipient, update in zip(job.recipients, result.updates, strict=True):
        emit(
            _log,
            "delivery.attempt",
            {
                "msg_id": job.message_id,
                "client": job.client,
                "rcpt": recipient.address,
                "mx": peer.mx,
                "address": peer.address,
                "tls": peer.tls,
                "result": update.status,
                "reply": update.reply,
                "attempt": recipient.attempts + 1,
                "delay": delay,
                "duration": duration,
                "next_attempt": rfc3339_or_none(update.next_attempt_at),
            },
        )


def log_final(job: DeliveryJob, result: JobResult) -> None:
    """A ``delivery.final`` line for each recipient that ``result`` sent or bounced."""
    delay = _delay(result.attempted_at, job)
    for recipient, update in zip(job.recipients, result.updates, strict=True):
        if update.status == "deferred":
            continue
        _final(job, recipient.address, update.status, update.reply, recipient.attempts + 1, delay)


def log_quarantined(jobs: Iterable[DeliveryJob], reason: str, now: float) -> None:
    """A ``delivery.final`` line, result ``failed``, for each recipient of ``jobs``; the
    reply is what the store records (``quarantined: `` and the reason)."""
    for job in jobs:
        delay = _delay(now, job)
        for recipient in job.recipients:
            reply = QUARANTINE_PREFIX + reason
            _final(job, recipient.address, "failed", reply, recipient.attempts, delay)


def _final(
    job: DeliveryJob, rcpt: str, result: str, reply: str, attempts: int, delay: float
) -> None:
    emit(
        _log,
        "delivery.final",
        {
            "msg_id": job.message_id,
            "client": job.client,
            "rcpt": rcpt,
            "result": result,
            "reply": reply,
            "attempts": attempts,
            "delay": delay,
        },
        LogLevel.info if result == "sent" else LogLevel.warn,
    )
