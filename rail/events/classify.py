"""What a permanent failure says about the address: hard, soft, policy or unknown.

Only a **hard** failure (the mailbox or its domain does not exist, or is disabled) puts an
address on the suppression list: suppressing on a full mailbox, a message too large or a
receiver's policy block would silence a working address because of one message or one
blocklist. The enhanced status code decides when there is one (RFC 3463 and the IANA
registry of enhanced codes); without it, the basic code and a few phrases widely used by
receivers do. Used for replies to RCPT and DATA and for the status of DSNs alike.
"""

from __future__ import annotations

import re
from typing import Final, Literal

__all__ = ["Classification", "classify"]

Classification = Literal["hard", "soft", "policy", "unknown"]

# Subject.detail codes (after the class digit) that say the address is dead.
_HARD: Final = frozenset(
    {
        "1.1",  # bad destination mailbox address
        "1.2",  # bad destination system address
        "1.3",  # bad destination mailbox address syntax
        "1.6",  # destination mailbox has moved, no forwarding address
        "1.10",  # recipient address has null MX (RFC 7505)
        "2.1",  # mailbox disabled, not accepting messages
        "4.4",  # unable to route (no such domain)
    }
)
# Codes about this message or a passing condition of the mailbox, not the address.
_SOFT: Final = frozenset({"2.2", "2.3", "3.4", "1.4"})
_ENHANCED: Final = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
_DEAD_PHRASES: Final = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient)|does not exist"
    r"|mailbox (unavailable|not found)|invalid (recipient|mailbox)|recipient rejected"
    r"|address rejected|undeliverable address",
    re.IGNORECASE,
)
_POLICY_PHRASES: Final = re.compile(
    r"spam|blocked|block ?list|blacklist|reputation|dmarc|policy|denied|rbl|spamhaus",
    re.IGNORECASE,
)


def classify(code: int | None, enhanced: str | None, text: str) -> Classification:
    """Classify a failure from its basic ``code`` (None for a DSN without one), its
    ``enhanced`` status (``"5.1.1"``) and the remote ``text``. Transient (4xx, 4.x.x)
    failures are ``soft``."""
    match = _ENHANCED.match(enhanced.strip()) if enhanced else None
    if match is not None:
        klass, detail = match.group(1), f"{int(match.group(2))}.{int(match.group(3))}"
        if klass == "4":
            return "soft"
        if klass == "2":
            return "unknown"
        if detail in _HARD:
            return "hard"
        if detail in _SOFT or detail.startswith(("3.", "4.")):
            return "soft"
        if detail.startswith(("7.", "6.")):
            return "policy"
        if detail.startswith(("1.", "2.")):
            return "hard" if _DEAD_PHRASES.search(text) else "unknown"
        return "unknown"
    if code is not None and 400 <= code < 500:
        return "soft"
    if _POLICY_PHRASES.search(text):
        return "policy"
    if _DEAD_PHRASES.search(text):
        return "hard"
    if code == 552:
        return "soft"
    return "unknown"
