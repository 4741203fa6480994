"""Standard Webhooks signatures: asymmetric (``v1a``, ed25519, Rail's public key) and
symmetric (``v1``, HMAC-SHA256 with the client's own secret), both in one header.

``v1a`` lets any application verify with the one public key Rail publishes; ``v1`` is what
the published Standard Webhooks libraries (PyPI ``standardwebhooks`` 1.1) can check, so
applications using them verify with their ``whsec_`` secret (``rail certs issue`` prints it).

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``: the id is stable across
retries of one job (the application's idempotency key), the timestamp is the time of *this*
attempt (the application rejects stale ones: replay protection). Pure: the key, id, time
and body come from the caller.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from cryptography.exceptions import InvalidSignature

from rail.webhooks.key import WebhookKey, public_key_from_text

__all__ = [
    "SIGNATURE_VERSION",
    "VerificationError",
    "sign",
    "sign_symmetric",
    "signed_content",
    "verify",
    "webhook_headers",
    "webhook_id",
]

SIGNATURE_VERSION = "v1a"
SYMMETRIC_VERSION = "v1"
_ID_SAFE = re.compile(r"[A-Za-z0-9_~-]+")


class VerificationError(Exception):
    """A webhook's headers do not prove it came from the key's owner."""


def webhook_id(message_id: str, client: str) -> str:
    """``msg_<ULID>_<client>``, with the client name's dots written as ``~`` (the spec
    wants no ``.`` in the id, and ``~`` never occurs in a client name, so ids stay
    distinct). The same for every attempt of one job."""
    value = f"msg_{message_id}_{client.replace('.', '~')}"
    if not _ID_SAFE.fullmatch(value):
        raise ValueError(f"cannot make a webhook id of {message_id!r} and {client!r}")
    return value


def signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode("ascii") + body


def sign(key: WebhookKey, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``webhook-signature`` entry: ``v1a,<base64 signature>``."""
    signature = key.sign(signed_content(msg_id, timestamp, body))
    return f"{SIGNATURE_VERSION}," + base64.b64encode(signature).decode("ascii")


def sign_symmetric(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64 HMAC-SHA256>`` entry, as the Standard Webhooks libraries check it."""
    digest = hmac.new(secret, signed_content(msg_id, timestamp, body), hashlib.sha256).digest()
    return f"{SYMMETRIC_VERSION}," + base64.b64encode(digest).decode("ascii")


def webhook_headers(
    key: WebhookKey, msg_id: str, timestamp: float, body: bytes, client: str | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for a POST of ``body`` at ``timestamp``; with
    ``client``, the signature header also carries that client's ``v1`` signatures: one
    per secret in force at ``timestamp`` (two while a rotated secret's overlap runs,
    the current one first)."""
    seconds = int(timestamp)
    signatures = [sign(key, msg_id, seconds, body)]
    if client is not None:
        symmetric = [
            sign_symmetric(secret, msg_id, seconds, body)
            for secret in key.client_secrets(client, timestamp)
        ]
        signatures[:0] = symmetric
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(seconds),
        "webhook-signature": " ".join(signatures),
    }


def verify(
    public_key: str,
    headers: dict[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = 300.0,
) -> None:
    """Check ``headers`` and ``body`` as an application should (docs/webhooks.md): some
    ``v1a`` signature verifies with ``public_key`` (``whpk_...``) and the timestamp is
    within ``tolerance`` seconds of ``now``. Raises :class:`VerificationError`."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise VerificationError("missing webhook headers")
    if not stamp.isdigit():
        raise VerificationError("invalid webhook-timestamp")
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance:
        raise VerificationError("webhook-timestamp outside the tolerance")
    key = public_key_from_text(public_key)
    content = signed_content(msg_id, timestamp, body)
    for entry in signatures.split(" "):
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            key.verify(base64.b64decode(encoded, validate=True), content)
        except (InvalidSignature, ValueError):
            continue
        return
    raise VerificationError("no matching v1a signature")
