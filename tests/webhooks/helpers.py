"""Shared values for the webhook tests."""

from __future__ import annotations

import random
from typing import Any

from rail.inbound.model import InboundMessage, WebhookJob, WebhookTarget

T0 = 1774699200.0  # 2026-03-28T12:00:00Z
MESSAGE_ID = "01KMT1GZ0000000000000000AB"
DATA = b"From: Bob <bob@example.net>\r\nSubject: =?utf-8?q?R=C3=A9ponse?=\r\n\r\nhello\r\n"
AUTHENTICATION: dict[str, Any] = {
    "spf": {"result": "pass", "scope": "mailfrom", "domain": "example.net"},
    "dkim": [{"result": "none"}],
    "dmarc": {"result": "none", "domain": "example.net", "policy": None},
}


class MidRandom(random.Random):
    """Jitter factor exactly 1: retry times are the schedule's."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


def job(**changes: Any) -> WebhookJob:
    values: dict[str, Any] = {
        "message_id": MESSAGE_ID,
        "client": "myapp",
        "url": "https://hooks.example.com/mail",
        "recipients": ("noreply@ataca.io",),
        "sender": "bob@example.net",
        "subject": "Réponse",
        "received_at": T0,
        "authentication": AUTHENTICATION,
        "bounce_allowed": True,
        "attempts": 0,
        "data": DATA,
    }
    values.update(changes)
    return WebhookJob(**values)


def inbound(
    message_id: str,
    url: str,
    *,
    received_at: float = T0,
    sender: str = "bob@example.net",
    bounce_allowed: bool = True,
    clients: tuple[str, ...] = ("myapp",),
) -> InboundMessage:
    return InboundMessage(
        id=message_id,
        sender=sender,
        targets=tuple(WebhookTarget(c, url, (f"{c}@ataca.io",)) for c in clients),
        data=DATA,
        received_at=received_at,
        subject="Réponse",
        authentication=AUTHENTICATION,
        bounce_allowed=bounce_allowed,
    )
