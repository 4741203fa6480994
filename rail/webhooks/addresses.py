"""Which webhook URLs and addresses Rail may POST to: the SSRF rule, pure.

A certificate's webhook URL is chosen by whoever asked for the certificate, and its host
name resolves to whatever its DNS says. So, unless ``webhooks.allow_private`` is set, Rail
refuses to connect when *any* address of the host is not globally routable (the rule of
:mod:`rail.delivery.publicaddress`, shared with MTA-STS policy hosts and TLS-RPT
report addresses). The HTTP client connects to exactly the address checked here, never
resolving again (DNS rebinding).

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

from rail.delivery.publicaddress import address_problem
from rail.pki.names import validate_webhook

__all__ = ["WebhookURL", "address_problem", "addresses_problem", "parse_webhook_url"]


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
