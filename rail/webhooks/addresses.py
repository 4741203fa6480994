"""Which webhook URLs and addresses Rail may POST to: the SSRF rule, pure.

A certificate's webhook URL is chosen by whoever asked for the certificate, and its host
name resolves to whatever its DNS says. So, unless ``webhooks.allow_private`` is set, Rail
refuses to connect when *any* address of the host is not globally routable: loopback,
RFC 1918 private, link-local (cloud metadata at 169.254.169.254), shared address space
(100.64.0.0/10), multicast, unspecified, reserved, documentation, unique-local
(fc00::/7), and the IPv4 ones in IPv6 clothing (IPv4-mapped, NAT64, 6to4, Teredo). The
HTTP client connects to exactly the address checked here, never resolving again (DNS
rebinding).

``http://`` is accepted only for loopback hosts when ``allow_http_loopback`` is set; the
host must then resolve to loopback addresses only. Loopback is internal, so
``allow_private`` wins: while it is off no webhook reaches loopback, ``http://`` or not
(a certificate holder could otherwise POST to Rail's own ports, or to anything else
listening on the host).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import attrs

from rail.pki.names import validate_webhook

__all__ = ["WebhookURL", "address_problem", "addresses_problem", "parse_webhook_url"]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@attrs.frozen
class WebhookURL:
    """A webhook URL Rail may use: ``host`` is lower-case, without IPv6 brackets."""

    url: str
    scheme: str
    host: str
    port: int

    @property
    def is_ip_literal(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def parse_webhook_url(url: str, *, allow_http_loopback: bool) -> WebhookURL | str:
    """The URL's parts, or why Rail will not POST to it."""
    problem = validate_webhook(url, allow_http_loopback)
    if problem is not None:
        return f"webhook URL not allowed: {problem}"
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    scheme = parts.scheme.lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        return "webhook URL not allowed: invalid port"
    return WebhookURL(url=url, scheme=scheme, host=host, port=port)


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
    target: WebhookURL, addresses: list[str], *, allow_private: bool
) -> str | None:
    """Why Rail refuses to connect to ``target`` at these resolved ``addresses`` (all of
    them are checked, so a host cannot hide an internal address behind a public one),
    or None. An ``http://`` target needs loopback addresses *and* ``allow_private``."""
    if not addresses:
        return "address not allowed: the host has no address"
    for address in addresses:
        if target.scheme == "http":
            # validate_webhook allowed http only for a loopback host
            try:
                loopback = ipaddress.ip_address(address).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                problem = f"{address} is not loopback (http webhook)"
            elif not allow_private:
                problem = f"{address} is loopback (webhooks.allow_private is false)"
            else:
                problem = None
        else:
            problem = address_problem(address, allow_private=allow_private)
        if problem is not None:
            return f"address not allowed: {problem}"
    return None
