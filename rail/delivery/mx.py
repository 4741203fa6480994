"""Which hosts and addresses to try for a recipient domain, in which order.

The DNS answers come from :mod:`rail.delivery.resolve`; the decisions about them live here
as pure functions so that the ordering rules of RFC 5321 §5.1 and RFC 7505 (null MX) are
tested with plain values:

- MX hosts are tried in preference order; hosts of equal preference are shuffled (with an
  injected random source) so that load spreads as the domain's owner intended;
- a domain publishing only the root as exchange (``0 .``) accepts no mail at all;
- every address of a host is tried, IPv6 and IPv4 alternating (RFC 8305 §4), so that a
  broken IPv6 path costs one failed connection, not all of them.

Recipient domains may also be address literals (RFC 5321 §4.1.3: ``[192.0.2.1]``,
``[IPv6:2001:db8::1]``), which name the one address to deliver to without DNS.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence

__all__ = [
    "is_address_literal",
    "is_null_mx",
    "order_addresses",
    "order_hosts",
    "parse_address_literal",
]


def _is_root(exchange: str) -> bool:
    return exchange in ("", ".")


def _host_key(exchange: str) -> str:
    """Host names compare case-insensitively and without a trailing dot."""
    return exchange.rstrip(".").lower()


def is_null_mx(records: Sequence[tuple[int, str]]) -> bool:
    """True for the RFC 7505 null MX: exactly one record, preference 0, exchange the root.

    ``records`` are ``(preference, exchange)`` pairs as the DNS returned them; the root
    may be written ``""`` (as twisted.names decodes it) or ``"."``.
    """
    return len(records) == 1 and records[0][0] == 0 and _is_root(records[0][1])


def order_hosts(records: Sequence[tuple[int, str]], rng: random.Random) -> list[str]:
    """MX exchanges in the order to try them (RFC 5321 §5.1).

    Lowest preference first; within one preference, a shuffle by ``rng`` of the names
    sorted, so the result depends only on the set of records and the random source, not
    on the order a resolver happened to return them in. A host listed more than once
    keeps only its best preference. Root exchanges (null MX entries) are dropped: an
    empty result from non-empty records therefore means "no mail accepted here". Names
    are returned lower-cased without a trailing dot.
    """
    best: dict[str, int] = {}
    for preference, exchange in records:
        if _is_root(exchange):
            continue
        name = _host_key(exchange)
        if name not in best or preference < best[name]:
            best[name] = preference
    ordered: list[str] = []
    for preference in sorted(set(best.values())):
        group = sorted(name for name, p in best.items() if p == preference)
        rng.shuffle(group)
        ordered.extend(group)
    return ordered


def order_addresses(ipv6: Sequence[str], ipv4: Sequence[str]) -> list[str]:
    """All addresses of one host, alternating families and starting with IPv6.

    RFC 8305 §4 interleaves the families so that a host whose IPv6 (or IPv4) path is
    broken still reaches the other family on the second connection. Within a family the
    DNS order is kept; duplicates are dropped.
    """
    ordered: list[str] = []
    seen: set[str] = set()
    for index in range(max(len(ipv6), len(ipv4))):
        for family in (ipv6, ipv4):
            if index < len(family) and family[index] not in seen:
                seen.add(family[index])
                ordered.append(family[index])
    return ordered


def is_address_literal(domain: str) -> bool:
    """True when the domain part of an address is written as an address literal."""
    return domain.startswith("[")


def parse_address_literal(domain: str) -> str | None:
    """The IP address an address literal names, or None if it is not a valid one.

    Accepts ``[192.0.2.1]`` and ``[IPv6:2001:db8::1]`` (the tag is case-insensitive), the
    two forms RFC 5321 §4.1.3 defines; general literals with other tags and IPv6 zone
    identifiers are refused. The address comes back in its canonical text form.
    """
    if not (domain.startswith("[") and domain.endswith("]")) or "%" in domain:
        return None
    inner = domain[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            return str(ipaddress.IPv6Address(inner[5:]))
        return str(ipaddress.IPv4Address(inner))
    except ValueError:
        return None
