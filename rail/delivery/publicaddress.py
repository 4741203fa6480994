"""Which IP addresses Rail may connect to when someone else names the host: the SSRF
rule, pure.

A webhook URL (chosen by a certificate holder), a recipient domain's ``mta-sts.<domain>``
policy host and the ``https:`` report address of its ``_smtp._tls`` record all resolve to
whatever their DNS says. Pointed at an internal address, each would make Rail send
requests into its own network. So, unless the feature's ``allow_private`` setting is on,
Rail refuses an address that is not globally routable: loopback, RFC 1918 private,
link-local (cloud metadata at 169.254.169.254), shared address space (100.64.0.0/10),
multicast, unspecified, reserved, documentation, unique-local (fc00::/7), and the IPv4
ones in IPv6 clothing (IPv4-mapped, NAT64, 6to4, Teredo). Callers check *every* address
of a host (so a host cannot hide an internal address behind a public one) and connect to
a checked address, never resolving again (DNS rebinding).
"""

from __future__ import annotations

import ipaddress

__all__ = ["address_problem", "addresses_problem"]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _category(address: IPAddress) -> str | None:
    """What makes ``address`` internal, or None for a global unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            category = _category(inner)
            return None if category is None else f"{category} (embeds {inner})"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("not globally routable", not address.is_global),
    )
    for name, applies in checks:
        if applies:
            return name
    return None


def address_problem(address: str, *, allow_private: bool) -> str | None:
    """``"10.0.0.5 is private"`` when Rail must not connect to ``address``, else None."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r} is not an IP address"
    if allow_private:
        return None
    category = _category(parsed)
    return None if category is None else f"{parsed} is {category}"


def addresses_problem(
    addresses: tuple[str, ...] | list[str], *, allow_private: bool, setting: str
) -> str | None:
    """Why Rail refuses a host with these resolved ``addresses`` (all are checked), naming
    ``setting`` (the ``allow_private`` that would allow it), or None."""
    if not addresses:
        return "address not allowed: the host has no address"
    for address in addresses:
        problem = address_problem(address, allow_private=allow_private)
        if problem is not None:
            return f"address not allowed: {problem} ({setting} is false)"
    return None
