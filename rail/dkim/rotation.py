"""Which domains ``rail dkim`` acts on, and rotating one domain's keys: the steps
``rail dkim rotate`` and the console share, with the same refusals.

Synchronous (the registry and the key files are read, keys are made and written): the
CLI calls it directly, the server from a worker thread.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from rail.config import Config
from rail.dkim.domains import local_domains
from rail.dkim.generations import Generation
from rail.dkim.keys import KeyStore
from rail.dkim.names import a_label
from rail.dkim.records import zone_line
from rail.pki.operations import file_source
from rail.pki.source import RegistrySource

__all__ = ["DomainError", "Rotated", "dkim_domains", "rotate_domain"]


class DomainError(Exception):
    """The domain asked for is not one ``rail dkim`` acts on (the CLI's exit 1); the
    message is for the operator."""


@attrs.frozen
class Rotated:
    """A domain's new generation and the records of its keys, as zone-file lines."""

    domain: str
    generation: Generation
    records: tuple[str, ...]


def dkim_domains(
    config: Config, domain: str | None, now: datetime, source: RegistrySource | None = None
) -> tuple[KeyStore, list[str]]:
    """The key store and the domains a ``rail dkim`` command acts on: DOMAIN if it is
    local (or already has keys), else every local domain and every domain with keys.
    ``source`` is where the registry is (default: under ``data_dir``, sqlite only)."""
    records = []
    home = file_source(config, source)
    if home.exists():  # a set-up without clients has no registry yet
        with home.open() as registry:
            records = registry.valid_records(now)
    known = local_domains(config, records, now)
    store = KeyStore.open(config.data_dir / "dkim")
    candidates = sorted({*known, *store.domains()})
    if domain is None:
        if not candidates:
            raise DomainError("no local domains (set local_domains or issue a client certificate)")
        return store, candidates
    name = a_label(domain)
    if name is None or name not in candidates:
        listed = ", ".join(candidates) or "none"
        raise DomainError(f"{domain}: not a local domain (local: {listed})")
    return store, [name]


def rotate_domain(
    config: Config, domain: str, now: datetime, source: RegistrySource | None = None
) -> Rotated:
    """Add a generation of keys to ``domain`` (written under ``data_dir/dkim``); mail
    received from ``now`` on is signed with it once a server has re-read the keys.
    ``records`` are the new keys' records (older ones stay published while queued mail
    may still be signed with them). :class:`DomainError` for a domain that is not
    local; :class:`~rail.dkim.keys.DKIMKeyError` for key files that cannot be used."""
    store, (name,) = dkim_domains(config, domain, now, source)
    generation = store.rotate(name, now.timestamp())
    selectors = {generation.ed25519_selector, generation.rsa_selector}
    records = tuple(
        zone_line(name, key) for key in store.published(name, None) if key.selector in selectors
    )
    return Rotated(name, generation, records)
