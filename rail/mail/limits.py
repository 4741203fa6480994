"""The refusal of a message whose header section is over ``limits.header_size`` or
``limits.header_fields``, in SMTP's and the API's terms.

Refused at intake, before anything else reads the header: every parser, the DKIM signer
and the webhook payload read the whole section, so a bound here bounds them all.
"""

from __future__ import annotations

from rail.mail.headers import HEADER_FIELDS, HeaderLimits, header_excess
from rail.policy.verdict import Reject

__all__ = ["HEADER_TOO_LARGE", "check_header_section"]

HEADER_TOO_LARGE = "HEADER_TOO_LARGE"
"""The API's error code for both limits."""

_TOO_LARGE = Reject(552, "5.3.4", "Message header section too large", 413, HEADER_TOO_LARGE)
_TOO_MANY = Reject(552, "5.3.4", "Message header has too many fields", 413, HEADER_TOO_LARGE)


def check_header_section(data: bytes, limits: HeaderLimits) -> tuple[str, Reject] | None:
    """``None`` when the header section of ``data`` is within ``limits``; else the limit
    exceeded (``header_size`` or ``header_fields``, for the refusal counter) and the
    answer. Linear in at most ``limits.size`` octets of ``data``."""
    excess = header_excess(data, limits)
    if excess is None:
        return None
    return excess, _TOO_MANY if excess == HEADER_FIELDS else _TOO_LARGE
