"""The MTA-STS policy (RFC 8461) and the id that tells senders it changed.

The same policy serves every local domain: Rail is the only MX of each. The ``_mta-sts``
TXT record carries an id derived from the policy text, so any change of mode, MX or
max_age changes the id and senders fetch the new policy; an unchanged policy keeps its id
across restarts.
"""

from __future__ import annotations

import hashlib

__all__ = ["policy_id", "policy_text"]

_ID_LENGTH = 20  # RFC 8461 §3.1: 1 to 32 alphanumeric characters.


def policy_text(mode: str, hostname: str, max_age: float) -> str:
    """The policy file served at ``https://mta-sts.<domain>/.well-known/mta-sts.txt``,
    lines ended by CRLF (RFC 8461 §3.2)."""
    lines = ["version: STSv1", f"mode: {mode}", f"mx: {hostname}", f"max_age: {int(max_age)}"]
    return "".join(f"{line}\r\n" for line in lines)


def policy_id(text: str) -> str:
    """A stable identifier of ``text``: the first 20 hex digits of its SHA-256."""
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:_ID_LENGTH]
