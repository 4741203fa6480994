"""What one delivery attempt means for each recipient: sent, deferred until when, or bounced.

Pure: the scheduler passes the job, what the remote server (or routing, or the network)
said, the time and the random source for jitter, and records the :class:`JobResult` this
returns. The class of the reply decides (2xx sent, 4xx deferred, 5xx bounced); a deferral
past ``max_age`` becomes a bounce that quotes the last reply.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs

from rail.delivery.log import Peer
from rail.delivery.outcome import MessageResult, Reply, disposition
from rail.delivery.schedule import expiry_reply, next_attempt
from rail.store.model import DeliveryJob, JobResult, RecipientUpdate

__all__ = ["RetryPolicy", "job_result", "job_result_for_all", "with_peer"]


@attrs.frozen
class RetryPolicy:
    """When to try again: ``schedule`` delays (the last repeats) with ``jitter``, until
    ``max_age`` after acceptance."""

    schedule: tuple[float, ...]
    max_age: float
    jitter: float = 0.1


def job_result(
    job: DeliveryJob,
    result: MessageResult,
    *,
    now: float,
    policy: RetryPolicy,
    rng: random.Random,
    remote_mta: str | None,
) -> JobResult:
    """The recorded outcome of a transaction that reached its end (each recipient has a
    reply of its own, in the job's order)."""
    return _result(
        job,
        [r.reply for r in result.recipients],
        now=now,
        policy=policy,
        rng=rng,
        remote_mta=remote_mta,
    )


def job_result_for_all(
    job: DeliveryJob,
    reply: Reply,
    *,
    now: float,
    policy: RetryPolicy,
    rng: random.Random,
    remote_mta: str | None = None,
) -> JobResult:
    """The outcome when one reply decides for every recipient of the job: a routing
    failure, no reachable host, a session that broke before the transaction ended."""
    return _result(
        job,
        [reply] * len(job.recipients),
        now=now,
        policy=policy,
        rng=rng,
        remote_mta=remote_mta,
    )


def _result(
    job: DeliveryJob,
    replies: Sequence[Reply],
    *,
    now: float,
    policy: RetryPolicy,
    rng: random.Random,
    remote_mta: str | None,
) -> JobResult:
    updates = []
    for recipient, reply in zip(job.recipients, replies, strict=True):
        fate = disposition(reply)
        when: float | None = None
        expired_after: str | None = None
        if fate == "deferred":
            when = next_attempt(
                now,
                job.received_at,
                recipient.attempts + 1,
                policy.schedule,
                policy.max_age,
                rng,
                policy.jitter,
            )
            if when is None:
                expired_after = str(reply)
                fate, reply = "bounced", expiry_reply(reply)
        updates.append(
            RecipientUpdate(
                idx=recipient.idx,
                status=fate,
                reply=str(reply),
                remote_mta=remote_mta if reply.remote else None,
                next_attempt_at=when,
                expired_after=expired_after,
            )
        )
    return JobResult(job.message_id, now, tuple(updates))


def with_peer(result: JobResult, peer: Peer) -> JobResult:
    """``result`` with where its attempt went, for the events the store records with it
    (a plaintext connection's ``"none"`` TLS becomes None)."""
    tls = None if peer.tls in (None, "none") else peer.tls
    return attrs.evolve(result, mx=peer.mx, address=peer.address, tls=tls)
