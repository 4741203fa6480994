"""Verify a Rail event webhook in Python with the `standardwebhooks` package.

    pip install standardwebhooks

Rail signs each event POST twice (Standard Webhooks): `v1`, an HMAC-SHA256 with your
client's own secret (`whsec_...`, printed by `rail certs issue`), and `v1a`, an ed25519
signature with Rail's public key. The `standardwebhooks` package checks `v1`.

Command line (what Rail's tests run): python verify.py SECRET HEADERS.json BODY
prints "ok <type> <id>" and exits 0 if the request verifies, else exits 1.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def verify_rail_event(secret: str, headers: dict, body: bytes) -> dict:
    """The event, if Rail signed these exact body bytes with your secret less than five
    minutes ago; raises WebhookVerificationError otherwise. Pass the raw body, before
    any JSON parsing."""
    return Webhook(secret).verify(body, headers)


_seen: set = set()  # in production: a table, kept at least webhooks.max_age (3 days)


def handle(secret: str, headers: dict, body: bytes) -> int:
    """A handler's shape: the HTTP status to answer."""
    try:
        event = verify_rail_event(secret, headers, body)
    except WebhookVerificationError:
        return 401
    if event["id"] in _seen:
        return 200  # a retry of an event already processed: acknowledge, do nothing
    _seen.add(event["id"])
    if event["type"] == "message.bounced" and event["details"]["classification"] == "hard":
        pass  # e.g. mark event["recipient"] as undeliverable in your database
    return 200


def main(argv: list) -> int:
    secret, headers_file, body_file = argv
    with open(headers_file, encoding="utf-8") as f:
        headers = json.load(f)
    with open(body_file, "rb") as f:
        body = f.read()
    try:
        event = verify_rail_event(secret, headers, body)
    except WebhookVerificationError as error:
        print(f"rejected: {error}", file=sys.stderr)
        return 1
    print(f"ok {event['type']} {event['id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
