"""``rail config-check``'s forwarding check: loops and local targets (:mod:`.loops`),
judged with the local domains of the certificates in the registry when there is one
(reading it creates nothing)."""

from __future__ import annotations

from datetime import datetime

from rail.config.schema import Config
from rail.forward.loops import forward_problems
from rail.inbound.recipients import recipient_table
from rail.pki.registry import RegistryError
from rail.shared.registry import registry_source

__all__ = ["forwarding_problems"]


def forwarding_problems(config: Config, now: datetime) -> list[str]:
    """One line per forward target that comes back to Rail (see :mod:`.loops`)."""
    if not any(route.forward for route in config.inbound.routes):
        return []
    source = registry_source(config)
    records = []
    if source.exists():
        try:
            with source.open() as registry:
                records = registry.list_all()
        except RegistryError:
            pass  # the configured local domains are still checked; the warnings say why
    return forward_problems(recipient_table(config, records, now))
