"""The JSON body of an inbound-mail webhook (docs/webhooks.md).

The seed's fields, exactly (``message_id``, ``from``, ``to``, ``subject``, ``raw_message``,
``received_at``), plus additive ones (``type``, ``authentication``, ``size``). Pure; the
body is compact ASCII JSON, so what the application hashes is what Rail signed whatever
its JSON library does with non-ASCII text.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from rail.inbound.model import WebhookJob
from rail.timefmt import rfc3339

__all__ = ["rfc3339", "webhook_body", "webhook_payload"]


def webhook_payload(job: WebhookJob) -> dict[str, Any]:
    return _payload(job, base64.b64encode(job.data).decode("ascii"))


def _payload(job: WebhookJob, raw_message: str) -> dict[str, Any]:
    return {
        "type": "inbound",
        "message_id": job.message_id,
        "from": job.sender,
        "to": list(job.recipients),
        "subject": job.subject,
        "raw_message": raw_message,
        "received_at": rfc3339(job.received_at),
        "size": len(job.data),
        "authentication": job.authentication,
    }


# Only a key can match: inside a JSON string every quote is escaped.
_RAW = b'"raw_message":"'


def webhook_body(job: WebhookJob) -> bytes:
    """The bytes POSTed (and signed): ``webhook_payload`` as compact ASCII JSON.

    The base64 message (which needs no JSON escaping) is spliced in as bytes rather than
    passed through the JSON encoder: a 25 MB message then costs its base64 and the body,
    not also a str of the base64 and a str of the whole body (``bench/memory.py``).
    """
    text = json.dumps(_payload(job, ""), separators=(",", ":"), ensure_ascii=True)
    head, found, tail = text.encode("ascii").partition(_RAW + b'"')
    assert found, "the payload has a raw_message field"
    return b"".join((head, _RAW, base64.b64encode(job.data), b'"', tail))
