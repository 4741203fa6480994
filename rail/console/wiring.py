"""The console's resource as the server builds it: its reads of the registry, the
records and the disk, and revoking a certificate (registry and CRL, as ``rail certs
revoke`` does), each run in the reactor's thread pool."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from twisted.internet.threads import deferToThreadPool

from rail.config import Config
from rail.config.clients import ClientPolicies
from rail.console.pages import DKIMSelectors
from rail.console.resource import Console, ConsoleSources
from rail.delivery.stats import DeliveryStats
from rail.dkim.keys import KeyStore
from rail.dns.cli import records_text
from rail.pki.clientevents import ClientEvents
from rail.pki.operations import revoke
from rail.pki.registry import CertificateRecord
from rail.pki.source import RegistrySource
from rail.shared.registry import registry_source
from rail.store.deliveries import DSNBuilder
from rail.store.reserve import free_bytes
from rail.web.admin import DomainsReport

__all__ = ["build_console"]


def build_console(
    config: Config,
    reactor: Any,
    store: Any,
    stats: DeliveryStats | None,
    dsn: DSNBuilder | None,
    domains: DomainsReport | None,
    policies: Callable[[], ClientPolicies] | None = None,
    server_certificate: Callable[[], x509.Certificate] | None = None,
    source: RegistrySource | None = None,
) -> Console:
    """``/console``'s resource; the CSRF secret is made here, once per start;
    ``policies`` returns the client limits and sandbox flags in force."""

    def in_thread(work: Any) -> Any:
        return deferToThreadPool(reactor, reactor.getThreadPool(), work)

    home = registry_source(config) if source is None else source

    def read_certificates() -> list[CertificateRecord]:
        if not home.exists():
            return []
        with home.open() as registry:
            return registry.list_all()

    def read_events() -> list[ClientEvents]:
        if not home.exists():
            return []
        with home.open() as registry:
            return registry.all_events()

    def read_dkim() -> list[DKIMSelectors]:
        keys = KeyStore.open(config.data_dir / "dkim")
        now = reactor.seconds()
        found = []
        for domain in keys.domains():
            signing = keys.signing_keys(domain, now)
            if signing is not None:
                found.append(
                    DKIMSelectors(
                        domain,
                        signing.ed25519_selector,
                        signing.rsa_selector,
                        keys.activated_at(domain, now),
                    )
                )
        return found

    sources = ConsoleSources(
        store=store,
        clock=reactor,
        secret=os.urandom(32),
        stats=stats,
        certificates=lambda: in_thread(read_certificates),
        records=lambda: in_thread(lambda: records_text(config, None, reactor.seconds)),
        domains=domains,
        disk_free=lambda: in_thread(lambda: free_bytes(config.data_dir / "queue")),
        dsn=dsn,
        policies=policies,
        server_certificate=server_certificate,
        client_events=lambda: in_thread(read_events),
        dkim=lambda: in_thread(read_dkim),
        revoke=lambda serial: in_thread(
            lambda: revoke(
                config, serial, datetime.fromtimestamp(reactor.seconds(), UTC), source=home
            )
        ),
    )
    return Console(sources)
