"""Per-page CSRF tokens for the console's forms.

A browser sends the admin's client certificate with any request to Rail, including one a
hostile page makes it send, so a certificate alone does not show that the operator meant
a POST. Every form carries a token: HMAC-SHA256, under a secret the server made at start,
over the admin certificate's SHA-256 fingerprint and the path the form posts to. Another
site can neither read it (same-origin policy) nor compute it, and a token taken from one
form does not work for another action or for another certificate. Pure.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["csrf_token", "csrf_valid"]


def csrf_token(secret: bytes, fingerprint: str, path: str) -> str:
    """The token of the form that posts to ``path`` for the certificate ``fingerprint``."""
    message = fingerprint.encode("ascii") + b"\x00" + path.encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def csrf_valid(secret: bytes, fingerprint: str, path: str, token: str | None) -> bool:
    """Whether ``token`` is the one :func:`csrf_token` gives (compared in constant time)."""
    if not token:
        return False
    return hmac.compare_digest(csrf_token(secret, fingerprint, path), token)
