"""``GET /api/v1/webhook-key``: the public key applications verify webhooks with, and
``GET /api/v1/webhook-secret``: the calling client's own symmetric secret.

The key needs no authentication: a public key is public, and an application may fetch it
once at deployment and pin it (docs/webhooks.md). Never trust a key fetched per request.
The secret is the client's alone, so it is given only over mTLS, to that client.
"""

from __future__ import annotations

from typing import Any, cast

from rail.web.jsonapi import JSONResource, write_error, write_json
from rail.web.send import client_identity
from rail.webhooks.key import WebhookKey

__all__ = ["WebhookKeyResource", "WebhookSecretResource"]


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


class WebhookSecretResource(JSONResource):
    """Answers the authenticated client ``{"client": NAME, "secret": "whsec_...",
    "format": "standard-webhooks"}``: the secret its webhooks' ``v1`` signature uses."""

    def __init__(self, key: WebhookKey) -> None:
        cast(Any, super()).__init__()
        self._key = key

    def render_GET(self, request: Any) -> bytes:
        identity = client_identity(request)
        if isinstance(identity, bytes):
            return identity
        if identity.role == "admin":
            # An admin certificate has no webhook: a secret for it would sign nothing.
            return write_error(
                request,
                403,
                "NOT_A_CLIENT",
                "an admin certificate has no webhooks; ask with the client's certificate",
            )
        request.setHeader(b"cache-control", b"no-store")
        return write_json(
            request,
            200,
            {
                "client": identity.name,
                "secret": self._key.client_secret_text(identity.name),
                "format": "standard-webhooks",
            },
        )
