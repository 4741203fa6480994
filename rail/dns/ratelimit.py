"""Response rate limiting (RRL) for UDP answers, against reflection attacks.

A spoofed query makes Rail send its answer to a victim; limiting identical answers per
client network bounds what an attacker gets out of Rail, without limiting a resolver that
asks many different questions. As in BIND's RRL, a token bucket is kept per *client
network* (``/24`` for IPv4, ``/56`` for IPv6 by default) *and response*:

- an answer (NOERROR with records): the query name, type and class;
- NODATA (NOERROR, no records): likewise, counted apart from answers;
- NXDOMAIN: the zone, whatever the name asked, so random names under a zone share one
  bucket (they are what a flood of made-up names gets);
- an error (REFUSED, FORMERR, NOTIMP, BADVERS): the client network alone.

Rail never answers with a referral (it serves no delegations), so that kind does not
occur. Each bucket holds at most one second of answers, refilled at
``responses_per_second``. Over the limit, every ``slip``-th answer is sent truncated
(empty, TC=1) so a real client behind that network retries over TCP, which is not limited
(a TCP handshake cannot be spoofed); the others are dropped.

The table is bounded: at most ``max_entries`` buckets, least recently used first out,
O(1) per answer. A bucket unused for a second or more is full again, so forgetting it
changes nothing; eviction loses state only if more than ``max_entries`` different
(network, response) pairs are answered within one second, far above what one Rail
process serves.

Time comes from the caller (``now``), so the logic is tested with exact values.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Hashable
from typing import Literal

__all__ = ["Decision", "RateLimiter", "response_key"]

Decision = Literal["answer", "slip", "drop"]

MAX_ENTRIES = 100_000
"""Default bound on the number of buckets (network and response pairs) kept."""

_NOERROR = 0
_NXDOMAIN = 3
_ERROR_KEY = ("error",)


def response_key(
    rcode: int, answered: bool, name: str, qtype: int, qclass: int, zone: str | None
) -> tuple[Hashable, ...]:
    """What identifies a response for rate limiting (the client network is added by
    :meth:`RateLimiter.check`).

    ``name`` is the query name in lower case, ``answered`` whether the answer section
    has records, ``zone`` the origin of the zone the name falls in (None outside every
    zone). See the module docstring for the rules.
    """
    if rcode == _NOERROR:
        return ("answer" if answered else "nodata", name, qtype, qclass)
    if rcode == _NXDOMAIN:
        return ("nxdomain", zone)
    return _ERROR_KEY


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
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.rate = responses_per_second
        self.slip = slip
        self._v4_shift = 32 - ipv4_prefix
        self._v6_shift = 128 - ipv6_prefix
        self._max = max(max_entries, 1)
        self._buckets: OrderedDict[tuple[Hashable, ...], _Bucket] = OrderedDict()

    def network(self, address: str) -> tuple[int, int]:
        """The key of the network ``address`` belongs to: ``(IP version, prefix)``."""
        ip = ipaddress.ip_address(address.partition("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.version == 4:
            return (4, int(ip) >> self._v4_shift)
        return (6, int(ip) >> self._v6_shift)

    def check(self, address: str, response: tuple[Hashable, ...], now: float) -> Decision:
        """Account one answer identified by ``response`` (see :func:`response_key`) to
        ``address`` at ``now`` (seconds) and decide its fate."""
        if self.rate <= 0:
            return "answer"
        key = self.network(address) + response  # one flat tuple: smaller than nested
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self._max:
                buckets.popitem(last=False)
            bucket = buckets[key] = _Bucket(float(self.rate), now)
        else:
            buckets.move_to_end(key)
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
