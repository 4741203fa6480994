"""The MTA-STS policy file, served at ``/.well-known/mta-sts.txt`` (RFC 8461 §3.2).

Senders fetch it from ``https://mta-sts.<domain>/`` for every local domain; the content
is the same for all of them, built by :func:`rail.dns.mtasts.policy_text`, whose id the
``_mta-sts`` TXT record carries. Mount with
``root.putChild(b".well-known", well_known)`` and
``well_known.putChild(b"mta-sts.txt", MTASTSPolicy.from_config(config))``.
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource

from rail.config import Config
from rail.dns.mtasts import policy_text

__all__ = ["MTASTSPolicy"]


class MTASTSPolicy(Resource):
    """A leaf answering GET (and HEAD) with the policy as ``text/plain``."""

    isLeaf = True

    def __init__(self, policy: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call, unused-ignore]
        self.policy = policy

    @classmethod
    def from_config(cls, config: Config) -> MTASTSPolicy:
        """The policy for ``config``'s host name and ``dns.mta_sts_*`` settings."""
        return cls(_policy(config))

    def update(self, config: Config) -> None:
        """Serve the policy of a reloaded configuration."""
        self.policy = _policy(config)

    def render_GET(self, request: Any) -> bytes:
        if request.postpath not in ([], [b""]):
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"not found\n"
        request.setHeader(b"Content-Type", b"text/plain")
        # Senders cache by max_age and the DNS id; keep HTTP caches out of it.
        request.setHeader(b"Cache-Control", b"no-cache")
        return self.policy.encode("ascii")


def _policy(config: Config) -> str:
    dns = config.dns
    return policy_text(dns.mta_sts_mode, config.hostname, dns.mta_sts_max_age)
