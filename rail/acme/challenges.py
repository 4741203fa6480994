"""The HTTP-01 challenges Rail is answering right now, shared by the ACME client and port 80.

The ACME client runs in a worker thread (it does blocking HTTP) and adds a token before it
tells the CA to validate, then removes it once the order is settled; the port-80 resource
reads tokens on the reactor thread. A lock keeps the two sides consistent. Pure: no I/O.
"""

from __future__ import annotations

import re
import threading

__all__ = ["PendingChallenges", "is_token"]

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


def is_token(text: str) -> bool:
    """True for what an ACME token can be: base64url characters without padding
    (RFC 8555 §8.3), bounded in length so a request path cannot make us store much."""
    return _TOKEN.fullmatch(text) is not None


class PendingChallenges:
    """Token to key authorization, for the challenges of orders in progress."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, str] = {}

    def add(self, token: str, key_authorization: str) -> None:
        """Answer ``token`` with ``key_authorization`` from now on."""
        if not is_token(token):
            raise ValueError(f"not an ACME token: {token!r}")
        with self._lock:
            self._pending[token] = key_authorization

    def remove(self, token: str) -> None:
        """Stop answering ``token`` (no error if it is not pending)."""
        with self._lock:
            self._pending.pop(token, None)

    def get(self, token: str) -> str | None:
        """The key authorization for ``token``, or None if no order is waiting on it."""
        with self._lock:
            return self._pending.get(token)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)
