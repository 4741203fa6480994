"""``rail init --production``: a production configuration that asks nothing.

It derives what it can (the host name from this machine's fully qualified name, its public
addresses from that name's DNS records) and refuses with a clear message what it cannot
(a host name that is not a public, fully qualified DNS name, where ACME could never issue a
certificate). It writes only the configuration: the CA, keys and queue are created by the
first start, as the service user, under ``data_dir``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
import yaml

from rail.config import Config, parse_config
from rail.config.production import PRODUCTION_DATA_DIR, production_config_yaml
from rail.dkim.names import a_label
from rail.pki.files import write_file_atomic

__all__ = [
    "ProductionSetup",
    "SetupError",
    "fqdn_problem",
    "init_production",
    "public_addresses",
]

# Top-level names no public CA issues for (RFC 2606, 6761, 6762 and common private use).
_PRIVATE_TLDS = frozenset(
    {"localhost", "localdomain", "local", "internal", "lan", "home", "test", "invalid", "example"}
)


class SetupError(Exception):
    """What ``rail init --production`` cannot derive or will not overwrite; one line."""


@attrs.frozen
class ProductionSetup:
    config_path: Path
    config: Config


def fqdn_problem(hostname: str) -> str | None:
    """Why ``hostname`` cannot be a production host name, or ``None`` when it can: it must
    be a fully qualified DNS name a public CA issues certificates for."""
    name = a_label(hostname)
    if name is None:
        return f"{hostname!r} is not a DNS host name"
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        pass
    else:
        return f"{hostname!r} is an IP address, not a DNS name"
    labels = name.split(".")
    if len(labels) < 2:
        return f"{hostname!r} is not fully qualified (a name like mail.example.com is)"
    if labels[-1] in _PRIVATE_TLDS or labels[-1].isdigit():
        return f"{hostname!r} is not a public name (.{labels[-1]}): no public CA issues for it"
    return None


def public_addresses(hostname: str) -> tuple[list[str], list[str]]:
    """The globally routable IPv4 and IPv6 addresses ``hostname`` resolves to (none when it
    does not resolve): what Rail publishes as its A/AAAA and SPF records."""
    try:
        infos = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return [], []
    ipv4: list[str] = []
    ipv6: list[str] = []
    for family, _type, _proto, _name, address in infos:
        ip = ipaddress.ip_address(address[0])
        if not ip.is_global:
            continue
        found = ipv4 if family == socket.AF_INET else ipv6
        if str(ip) not in found:
            found.append(str(ip))
    return ipv4, ipv6


def init_production(
    config_path: Path,
    hostname: str | None = None,
    data_dir: str = PRODUCTION_DATA_DIR,
    domains: Sequence[str] = (),
    acme_email: str | None = None,
    force: bool = False,
    fqdn: Callable[[], str] = socket.getfqdn,
    addresses: Callable[[str], tuple[list[str], list[str]]] = public_addresses,
) -> ProductionSetup:
    """Write a production configuration to ``config_path``.

    ``hostname`` defaults to ``fqdn()``; ``addresses`` finds its public addresses. Raises
    :class:`SetupError` before writing anything if the host name is not a public FQDN, a
    domain is not a domain name, or the file exists (unless ``force``).
    """
    if hostname is None:
        hostname = fqdn()
        problem = fqdn_problem(hostname)
        if problem is not None:
            raise SetupError(f"this machine's name {problem}; give the public name with --hostname")
    else:
        problem = fqdn_problem(hostname)
        if problem is not None:
            raise SetupError(f"--hostname: {problem}")
    names = []
    for domain in domains:
        name = a_label(domain)
        if name is None or "." not in name:
            raise SetupError(f"--domain: {domain!r} is not a mail domain")
        if name not in names:
            names.append(name)
    if config_path.exists() and not force:
        raise SetupError(f"{config_path} exists; remove it or pass --force to replace it")
    ipv4, ipv6 = addresses(hostname)
    text = production_config_yaml(
        hostname=hostname,
        data_dir=data_dir,
        domains=names,
        acme_email=acme_email,
        ipv4=ipv4,
        ipv6=ipv6,
    )
    # Checked before writing: a bad --data-dir or --acme-email is a config error, exit 2.
    config = parse_config(yaml.safe_load(text), config_path.parent.absolute())
    # Readable by the service user: the file holds no secrets.
    config_path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    write_file_atomic(config_path, text.encode("utf-8"), 0o644)
    return ProductionSetup(config_path=config_path, config=config)
