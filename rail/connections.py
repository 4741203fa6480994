"""How many connections Rail holds: descriptor budget, per-listener caps, per-address counts.

Every open connection costs a file descriptor, and so do the queue, the certificate
registry, outbound deliveries and webhooks. Once the process's descriptors run out,
``accept`` fails on every port and the registry cannot be opened: one flood stops
everything. So Rail raises its soft ``RLIMIT_NOFILE`` to the hard limit at start, keeps a
reserve for its own work, and shares the rest between its TCP listeners
(:func:`listener_cap`); within a listener, one client address (an IPv4 address, or an
IPv6 network of ``ipv6_prefix`` bits) may hold only a few (:class:`GroupCounter`).

Pure: no reactor, no sockets. The listener layer (``rail/gate.py``) applies these numbers.
"""

from __future__ import annotations

import ipaddress
import resource
from collections.abc import Callable

import attrs

from rail.config.schema import Config

__all__ = [
    "DescriptorLimit",
    "GateLimits",
    "GroupCounter",
    "default_reserve",
    "listener_cap",
    "listener_limits",
    "peer_group",
    "raise_descriptor_limit",
]

MIN_LISTENER_CAP = 16
"""A listener always takes at least this many connections, however small the budget:
a listener that refuses everyone is a worse failure than running short of descriptors."""


def peer_group(host: str, ipv6_prefix: int = 64) -> str:
    """The key a connection from ``host`` counts against.

    IPv4 addresses count alone; an IPv4-mapped IPv6 address (``::ffff:192.0.2.1``, a dual
    stack socket) counts as its IPv4 address; other IPv6 addresses count as their
    ``/ipv6_prefix`` network, because one subscriber usually holds a whole /64 and could
    otherwise open connections from as many addresses as it likes. Anything that is not
    an IP address (a UNIX socket) counts under its own text.
    """
    if ":" not in host:
        # IPv4 (or not an address): the kernel's dotted quad is already canonical, and
        # parsing it is most of this function's cost on every connection.
        return host
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if ipv6_prefix >= 128:
            return str(ip)
        network = ipaddress.IPv6Network((ip, ipv6_prefix), strict=False)
        return str(network)
    return str(ip)


class GroupCounter:
    """Open connections per key, bounded by ``limit``; no entry stays for a key with none."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def count(self, key: str) -> int:
        return self._open.get(key, 0)

    def acquire(self, key: str) -> bool:
        """Take a slot for ``key``; False (and nothing taken) when it holds ``limit``."""
        current = self._open.get(key, 0)
        if current >= self.limit:
            return False
        self._open[key] = current + 1
        return True

    def release(self, key: str) -> None:
        current = self._open.get(key, 0)
        if current <= 1:
            self._open.pop(key, None)
        else:
            self._open[key] = current - 1

    def __len__(self) -> int:
        """How many keys hold at least one connection."""
        return len(self._open)


def default_reserve(delivery_concurrency: int, webhook_concurrency: int) -> int:
    """Descriptors kept back from the listeners when ``limits.connections.reserve`` is
    not set: 512 for the queue, the registry, the DKIM keys, logs and resolvers, plus two
    per outbound SMTP connection allowed at once and per webhook POST allowed to one URL
    (the socket and its DNS look-ups). Webhook concurrency is per URL, so this is a floor
    when many webhook URLs are busy at once; the operator then sets the reserve."""
    return 512 + 2 * (delivery_concurrency + webhook_concurrency)


def listener_cap(descriptors: int, reserve: int, listeners: int) -> int:
    """Connections one TCP listener may hold: the descriptors left after the reserve,
    shared equally between the ``listeners`` enabled, and never less than
    :data:`MIN_LISTENER_CAP`."""
    if listeners <= 0:
        return MIN_LISTENER_CAP
    return max(MIN_LISTENER_CAP, (descriptors - reserve) // listeners)


@attrs.frozen(kw_only=True)
class GateLimits:
    """The bounds one listener's gate applies."""

    max_connections: int
    """Connections open at once on this listener."""
    per_ip: int
    """Connections open at once from one address (IPv6: one ``ipv6_prefix`` network)."""
    ipv6_prefix: int = 64
    evict_idle: float | None = None
    """When full, close the connection silent for longest if it has been silent this
    many seconds, to make room; ``None`` never closes one (the newcomer is refused)."""


def listener_limits(config: Config, descriptors: int) -> dict[str, GateLimits]:
    """The gate of each enabled TCP listener (``https``, ``submission``, ``inbound``,
    ``http``, ``dns``) for a process allowed ``descriptors`` open files."""
    connections = config.limits.connections
    per_ip = {
        "https": connections.per_ip.https,
        "submission": connections.per_ip.submission,
        "inbound": config.inbound.max_connections_per_ip,
        "http": connections.per_ip.http,
        "dns": connections.per_ip.dns,
    }
    enabled = [name for name in per_ip if getattr(config.listen, name) is not None]
    cap = connections.max_per_listener
    if cap is None:
        reserve = connections.reserve
        if reserve is None:
            reserve = default_reserve(config.delivery.concurrency, config.webhooks.concurrency)
        cap = listener_cap(descriptors, reserve, len(enabled))
    return {
        name: GateLimits(
            max_connections=cap,
            per_ip=per_ip[name],
            ipv6_prefix=connections.ipv6_prefix,
            evict_idle=connections.evict_idle,
        )
        for name in enabled
    }


@attrs.frozen
class DescriptorLimit:
    """``RLIMIT_NOFILE`` before and after :func:`raise_descriptor_limit` (an unlimited
    value is given as 1,048,576, Linux's default ``nr_open``)."""

    before: int
    soft: int
    hard: int


_Get = Callable[[int], tuple[int, int]]
_Set = Callable[[int, tuple[int, int]], None]


def raise_descriptor_limit(
    get: _Get | None = None, set_: _Set | None = None, infinity: int | None = None
) -> DescriptorLimit:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit, as far as the system allows.

    An unlimited hard limit (macOS) cannot be the soft limit; Rail then asks for
    1,048,576 and keeps what it had if that is refused. ``get``, ``set_`` and
    ``infinity`` default to the :mod:`resource` module's, for tests to replace.
    """
    get = get or resource.getrlimit
    set_ = set_ or resource.setrlimit
    infinity = resource.RLIM_INFINITY if infinity is None else infinity
    soft, hard = get(resource.RLIMIT_NOFILE)
    if soft == infinity:  # nothing to raise; count it as the most Rail would ask for
        return DescriptorLimit(before=_UNLIMITED, soft=_UNLIMITED, hard=_UNLIMITED)
    target = _UNLIMITED if hard == infinity else hard
    if soft < target:
        try:
            set_(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return DescriptorLimit(before=soft, soft=soft, hard=target)
        return DescriptorLimit(before=soft, soft=target, hard=target)
    return DescriptorLimit(before=soft, soft=soft, hard=target)


_UNLIMITED = 1_048_576
