"""Sandboxed clients: their mail is signed and recorded as delivered, never sent.

An app under test (``sandbox: true`` under ``clients.NAME`` or ``clients_default``) goes
through everything real mail does up to the connection: acceptance, rate limits, the
queue, DKIM signing (so a signing problem shows, as a quarantine), the recipient's final
status and the events. Each recipient becomes ``sent`` with :data:`SANDBOX_REPLY` as its
last reply, no MX is looked up and no connection is opened, and each gets a
``message.delivered`` event with ``"sandbox": true`` in the transaction that records it.

The flag is read when the scheduler claims the recipient: mail still queued when the flag
is turned off (SIGHUP) is delivered for real.

Pure: the result is made from the job and the time.
"""

from __future__ import annotations

from rail.events.model import Event
from rail.store.model import DeliveryJob, JobResult, RecipientUpdate

__all__ = ["SANDBOX_REPLY", "sandbox_result"]

SANDBOX_REPLY = "250 2.0.0 sandbox: accepted and signed, not delivered"
"""The ``last_reply`` of a sandboxed recipient, and the ``reply`` of its event."""


def sandbox_result(job: DeliveryJob, now: float) -> JobResult:
    """Every recipient of ``job`` sent at ``now``, with a ``message.delivered`` event each
    (details as for a real delivery, with no MX, address nor TLS)."""
    updates = tuple(
        RecipientUpdate(idx=recipient.idx, status="sent", reply=SANDBOX_REPLY)
        for recipient in job.recipients
    )
    events = tuple(
        Event(
            type="message.delivered",
            client=job.client,
            message_id=job.message_id,
            recipient=recipient.address,
            details={
                "mx": None,
                "address": None,
                "tls": None,
                "reply": SANDBOX_REPLY,
                "attempt": recipient.attempts + 1,
                "delay": max(0.0, now - job.received_at),
            },
            sandbox=True,
        )
        for recipient in job.recipients
    )
    return JobResult(message_id=job.message_id, attempted_at=now, updates=updates, events=events)
