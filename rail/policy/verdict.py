"""The one rejection vocabulary shared by SMTP and the HTTP API.

A policy function returns ``None`` to accept or a :class:`Reject`; the edge translates it:
SMTP sends ``code enhanced text``, the API sends ``status`` with the JSON ``error`` code.
"""

from __future__ import annotations

import attrs

__all__ = ["Reject"]


@attrs.frozen
class Reject:
    """Why something was refused, in both protocols' terms.

    ``text`` is what the peer sees: generic, never internal detail.
    """

    code: int
    enhanced: str
    text: str
    http_status: int = 400
    error: str = "INVALID_REQUEST"

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    def smtp_line(self) -> bytes:
        return f"{self.code} {self.enhanced} {self.text}".encode()
