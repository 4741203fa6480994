"""Response rate limiting for UDP answers, against reflection attacks.

A spoofed query makes Rail send its answer to a victim; limiting answers per client
network bounds what an attacker gets out of Rail. Each network (``/24`` for IPv4, ``/56``
for IPv6 by default) has a token bucket holding at most one second of answers, refilled
at ``responses_per_second``. Over the limit, every ``slip``-th answer is sent truncated
(empty, TC=1) so a real client behind that network retries over TCP, which is not
limited (a TCP handshake cannot be spoofed); the others are dropped.

Time comes from the caller (``now``), so the logic is tested with exact values.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

__all__ = ["Decision", "RateLimiter"]

Decision = Literal["answer", "slip", "drop"]

_MAX_NETWORKS = 100_000


class _Bucket:
    __slots__ = ("over", "tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated
        self.over = 0


class RateLimiter:
    """Decides, per answer, whether to send it, send it truncated, or drop it."""

    def __init__(
        self,
        responses_per_second: int,
        slip: int,
        ipv4_prefix: int = 24,
        ipv6_prefix: int = 56,
        max_networks: int = _MAX_NETWORKS,
    ) -> None:
        self.rate = responses_per_second
        self.slip = slip
        self._v4_shift = 32 - ipv4_prefix
        self._v6_shift = 128 - ipv6_prefix
        self._max = max_networks
        self._buckets: dict[tuple[int, int], _Bucket] = {}

    def network(self, address: str) -> tuple[int, int]:
        """The key of the network ``address`` belongs to: ``(IP version, prefix)``."""
        ip = ipaddress.ip_address(address.partition("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.version == 4:
            return (4, int(ip) >> self._v4_shift)
        return (6, int(ip) >> self._v6_shift)

    def check(self, address: str, now: float) -> Decision:
        """Account one answer to ``address`` at ``now`` (seconds) and decide its fate."""
        if self.rate <= 0:
            return "answer"
        key = self.network(address)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._evict(now)
            bucket = self._buckets[key] = _Bucket(float(self.rate), now)
        else:
            elapsed = max(now - bucket.updated, 0.0)
            bucket.tokens = min(float(self.rate), bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.over = 0
            return "answer"
        bucket.over += 1
        if self.slip > 0 and bucket.over % self.slip == 0:
            return "slip"
        return "drop"

    def __len__(self) -> int:
        return len(self._buckets)

    def _evict(self, now: float) -> None:
        """Forget networks whose bucket has refilled (idle for a second or more); if every
        network is active, forget them all rather than grow without bound."""
        busy = {
            key: bucket
            for key, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.updated) * self.rate < self.rate
        }
        self._buckets = busy if len(busy) < self._max // 2 else {}
