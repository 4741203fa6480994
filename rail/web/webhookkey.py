"""``GET /api/v1/webhook-key``: the public key applications verify webhooks with.

No authentication: a public key is public, and an application may fetch it once at
deployment and pin it (docs/webhooks.md). Never trust a key fetched per request.
"""

from __future__ import annotations

from typing import Any, cast

from rail.web.jsonapi import JSONResource, write_json

__all__ = ["WebhookKeyResource"]


class WebhookKeyResource(JSONResource):
    """Answers ``{"algorithm": "ed25519", "public_key": "whpk_...", "format":
    "standard-webhooks"}``; ``public_key`` is :attr:`WebhookKey.public_text`."""

    def __init__(self, public_key: str) -> None:
        cast(Any, super()).__init__()  # Resource is untyped (mypy --strict)
        self._document = {
            "algorithm": "ed25519",
            "public_key": public_key,
            "format": "standard-webhooks",
        }

    def render_GET(self, request: Any) -> bytes:
        return write_json(request, 200, self._document)
