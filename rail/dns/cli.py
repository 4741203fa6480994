"""``rail dns records``: print the zones Rail serves, as master files.

For operators who keep their DNS elsewhere: the output has the same records, TTLs and
serials as the running server (serials are read from ``data_dir/dns/serials.json``, never
written, so the command does not disturb a running server). Missing DKIM keys are
created first, as ``rail dkim show`` does, so the keys printed are the keys Rail will use.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rail.config import Config
from rail.dkim.keys import KeyStore
from rail.dkim.names import a_label
from rail.dns.sources import load_zones, zone_domains
from rail.dns.zone import Zone
from rail.dns.zonefile import zone_text
from rail.shared.mirror import synced
from rail.shared.registry import SharedSource, registry_source

__all__ = ["DNSCommandError", "records_text"]


class DNSCommandError(Exception):
    """The command failed (exit code 1); the message is for the operator."""


def records_text(config: Config, domain: str | None, now: Callable[[], float] = time.time) -> str:
    """The zone of ``domain`` (or of every local domain) as master-file text."""
    when = now()
    domains = zone_domains(config, when)
    if domain is not None:
        name = a_label(domain)
        if name is None or name not in domains:
            listed = ", ".join(domains) or "none"
            raise DNSCommandError(f"{domain}: not a local domain (local: {listed})")
        domains = [name]
    if not domains:
        raise DNSCommandError("no local domains (set local_domains or issue a client certificate)")

    def zones() -> list[Zone]:
        keys = KeyStore.open(config.data_dir / "dkim")
        keys.ensure([*domains, config.hostname], when)
        return load_zones(config, keys, when, domains=domains, save_serials=False)

    source = registry_source(config)
    if isinstance(source, SharedSource):  # the nodes' keys, from the shared database
        found = synced(source, config.data_dir, zones, paths=("dkim/",), now=when)
    else:
        found = zones()
    return "\n".join(zone_text(zone) for zone in found)
