"""Who may read ``/stats`` and ``/metrics`` (``web.public_stats``).

``admin``: admin certificates only; ``loopback`` (the default): admin certificates and
any request from a loopback address (a local Prometheus or curl); ``public``: everyone
who reaches the HTTPS listener. A refused caller without a certificate gets ``401
CLIENT_CERTIFICATE_REQUIRED``, one with a client certificate ``403 ADMIN_REQUIRED``.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from twisted.web.resource import Resource

from rail.web.admin import admin_identity

__all__ = ["StatsAccess", "is_loopback"]

Policy = Literal["admin", "loopback", "public"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address as the transport reports it, IPv4-mapped IPv6
    included) is a loopback address."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class StatsAccess(Resource):
    """Wraps a leaf resource and answers for it only those ``policy`` lets in."""

    isLeaf = True

    def __init__(self, inner: Resource, policy: Policy) -> None:
        super().__init__()
        self._inner = inner
        self._policy = policy

    def render(self, request: Any) -> Any:
        if self._policy == "public":
            return self._inner.render(request)
        if self._policy == "loopback":
            host = getattr(request.getClientAddress(), "host", None)
            if isinstance(host, str) and is_loopback(host):
                return self._inner.render(request)
        identity = admin_identity(request)
        if isinstance(identity, bytes):
            return identity
        return self._inner.render(request)
