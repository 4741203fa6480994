"""What the console reads and acts on, as :mod:`rail.console.wiring` builds it from the
server's configuration: the pages and actions see only these values and callables, so
tests build a console from a store, a clock and plain functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from cryptography import x509
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from rail.config.clients import ClientPolicies
from rail.console import domainpages
from rail.console.issuing import Issued, IssueForm
from rail.delivery.stats import DeliveryStats
from rail.dkim.rotation import Rotated
from rail.pki.clientevents import ClientEvents
from rail.pki.registry import CertificateRecord
from rail.store.deliveries import DSNBuilder
from rail.web.admin import DomainsReport

__all__ = ["ConsoleSources", "Issuing"]


@attrs.frozen
class ConsoleSources:
    """What the console reads and acts on. ``store`` is the queue store, SQLite or
    PostgreSQL (IAdminQueue, ISuppressionList, ``recipient_counts`` and
    ``message_events``); the callables return Deferreds and do their file work in a
    thread: ``certificates`` the registry's
    records, ``records`` ``rail dns records``' text, ``disk_free`` the bytes free under
    the queue. ``secret`` keys the CSRF tokens (random, made at start)."""

    store: Any
    """IAdminQueue and ISuppressionList, with ``recipient_counts``, ``message_events``,
    ``deferring_domains``, ``webhook_backlog``, ``recent_inbound`` and ``retry_inbound``
    (:class:`rail.store.queuestore.QueueStore`)."""
    clock: IReactorTime
    secret: bytes
    stats: DeliveryStats | None = None
    certificates: Callable[[], Deferred[list[CertificateRecord]]] | None = None
    records: Callable[[], Deferred[str]] | None = None
    domains: DomainsReport | None = None
    disk_free: Callable[[], Deferred[int]] | None = None
    dsn: DSNBuilder | None = None
    revoke: Callable[[str], Deferred[list[CertificateRecord]]] | None = None
    """Revoke the certificate with this hex serial (registry and CRL, in a thread)."""
    policies: Callable[[], ClientPolicies] | None = None
    """The per-client limits and sandbox flags in force (followed across SIGHUP)."""
    server_certificate: Callable[[], x509.Certificate] | None = None
    """The HTTPS listener's certificate now in use (no I/O)."""
    client_events: Callable[[], Deferred[list[ClientEvents]]] | None = None
    """Every client's event subscription (registry, read in a thread)."""
    dkim: Callable[[], Deferred[list[domainpages.DKIMSelectors]]] | None = None
    """The DKIM selectors each local domain signs with now (key files read in a thread)."""
    issuing: Issuing | None = None
    """Issuing certificates from the Clients page."""
    rotate_dkim: Callable[[str], Deferred[Rotated | str]] | None = None
    """Rotate a domain's DKIM keys as ``rail dkim rotate`` does and make the running
    server sign with them (in a thread); the rotation, or why not (the CLI's message)."""


@attrs.frozen
class Issuing:
    """What issuing needs: ``check`` gives a form's problems (``rail certs issue``'s
    messages; no I/O), ``issue`` issues in a thread (the certificate, or the problems
    that stopped it)."""

    check: Callable[[IssueForm], list[str]]
    issue: Callable[[IssueForm], Deferred[Issued | list[str]]]
    key_types: tuple[str, ...]
    default_key_type: str
    default_days: int
