"""Rail's zones from its configuration and data directory.

Gathers the inputs :mod:`rail.dns.zone` needs: the local domains (configured, plus the
domains of valid client certificates in the registry), the DKIM keys each domain and
``hostname`` publish (older generations stay while queued mail may be signed with them),
and the serials kept in ``data_dir/dns/serials.json``. Reads files and SQLite and writes
the serials file (with an fsync): the running server calls :func:`zones_from` in a worker
thread, never on the reactor (:mod:`rail.dns.service`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rail.config import Config
from rail.dkim.domains import local_domains
from rail.dkim.keys import KeyStore
from rail.dkim.records import PublishedKey
from rail.dns.serial import SerialFile
from rail.dns.zone import Zone, digest, domain_records, make_zone
from rail.shared.pending import oldest_pending
from rail.shared.registry import registry_source

__all__ = ["load_zones", "serial_path", "zone_domains", "zones_from"]


def serial_path(data_dir: Path) -> Path:
    """Where the SOA serials are kept."""
    return data_dir / "dns" / "serials.json"


def zone_domains(config: Config, now: float) -> list[str]:
    """The local domains at ``now``: each is a zone."""
    when = datetime.fromtimestamp(now, UTC)
    records = []
    source = registry_source(config)
    if source.exists():  # no client certificate issued yet
        with source.open() as registry:
            records = registry.valid_records(when)
    return local_domains(config, records, when)


def load_zones(
    config: Config,
    keys: KeyStore,
    now: float,
    *,
    domains: list[str] | None = None,
    save_serials: bool = True,
) -> list[Zone]:
    """Every local domain's zone (or those of ``domains``), with DKIM keys from ``keys``
    and serials from the state file, which is updated when ``save_serials`` is true.

    Raises :class:`~rail.store.model.StoreUnavailableError` if the queue cannot be read,
    and ``sqlite3.Error`` / :class:`~rail.pki.registry.RegistryError` for the registry.
    """
    oldest = oldest_pending(config)
    return zones_from(config, keys, now, oldest, domains=domains, save_serials=save_serials)


def zones_from(
    config: Config,
    keys: KeyStore,
    now: float,
    oldest_pending: float | None,
    *,
    domains: list[str] | None = None,
    save_serials: bool = True,
) -> list[Zone]:
    """Like :func:`load_zones`, with the queue's oldest pending message received at
    ``oldest_pending`` (None: nothing pending) already known: DKIM generations that
    mail received since then may be signed with stay published."""
    origins = zone_domains(config, now) if domains is None else domains
    published: dict[str, list[PublishedKey]] = {
        domain: keys.published(domain, oldest_pending)
        for domain in {*origins, config.hostname, *(n.hostname for n in config.dns.nodes)}
    }
    bounces = config.bounces.domain if config.bounces.enabled else None
    records = domain_records(
        origins, config.hostname, config.dns, published, bounces, config.dns.nodes
    )
    serials = SerialFile(serial_path(config.data_dir)).assign(
        {origin: digest(rs) for origin, rs in records.items()}, now, save=save_serials
    )
    return [
        make_zone(origin, records[origin], serials[origin], config.hostname, config.dns)
        for origin in origins
    ]
