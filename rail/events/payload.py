"""The JSON body of an event webhook (docs/events.md).

Exactly these fields: ``type``, ``id`` (the event's ULID, also its ``webhook-id``),
``timestamp`` (when the event happened, RFC 3339 UTC), ``client``, ``message_id``,
``request_id`` and ``tag`` (or null), ``metadata`` (``{}`` if none), ``recipient`` (or
null), ``sandbox`` and ``details`` (the type's own object). Pure; compact ASCII JSON, so
what the application hashes is what Rail signed whatever its JSON library does with
non-ASCII text.
"""

from __future__ import annotations

import json
from typing import Any

from rail.events.jobs import EventJob
from rail.timefmt import rfc3339

__all__ = ["event_body", "event_payload"]


def event_payload(job: EventJob) -> dict[str, Any]:
    return {
        "type": job.type,
        "id": job.id,
        "timestamp": rfc3339(job.created_at),
        "client": job.client,
        "message_id": job.message_id,
        "request_id": job.request_id,
        "tag": job.tag,
        "metadata": dict(job.metadata),
        "recipient": job.recipient,
        "sandbox": job.sandbox,
        "details": dict(job.details),
    }


def event_body(job: EventJob) -> bytes:
    """The bytes POSTed (and signed): :func:`event_payload` as compact ASCII JSON."""
    return json.dumps(event_payload(job), separators=(",", ":"), ensure_ascii=True).encode("ascii")
