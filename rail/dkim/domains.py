"""Which domains Rail signs for: the configured ones and those its clients may send from.

RAIL.md §3 makes the local domains ``local_domains`` plus the domains of every valid
client certificate's sender addresses, so issuing a certificate for a new domain is all
it takes to start sending (and signing) from it. Pure: the caller reads the registry.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from rail.config import Config
from rail.dkim.names import a_label
from rail.pki.registry import CertificateRecord

__all__ = ["local_domains"]


def local_domains(config: Config, records: Iterable[CertificateRecord], now: datetime) -> list[str]:
    """``config.local_domains`` and the domains of the email SANs of the ``records`` that
    are valid at ``now`` (neither expired nor revoked): sorted, lower-case A-labels, each
    once."""
    names = set(config.local_domains)
    for record in records:
        if record.status(now) == "valid":
            names.update(sender.rpartition("@")[2] for sender in record.senders)
    domains = {a_label(name) for name in names}
    return sorted(domain for domain in domains if domain is not None)
