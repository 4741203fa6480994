"""The console's resource as the server builds it: its reads of the registry, the
records and the disk, revoking a certificate (registry and CRL, as ``rail certs revoke``
does), issuing one (as ``rail certs issue`` does, without files) and rotating a domain's
DKIM keys (as ``rail dkim rotate`` does, then re-read by the running server as on
SIGHUP), each run in the reactor's thread pool."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from twisted.internet.threads import deferToThreadPool

from rail.config import Config
from rail.config.clients import ClientPolicies
from rail.console.domainpages import DKIMSelectors
from rail.console.issuing import Issued, IssueForm
from rail.console.resource import Console, ConsoleSources, Issuing
from rail.delivery.stats import DeliveryStats
from rail.dkim.keys import DKIMKeyError, KeyStore
from rail.dkim.records import zone_line
from rail.dkim.rotation import DomainError, Rotated, rotate_domain
from rail.dns.cli import records_text
from rail.eventscli import check_events, record_issue_events
from rail.pki.clientevents import ClientEvents
from rail.pki.files import PKIError
from rail.pki.issue import ClientRequest
from rail.pki.keys import KEY_TYPES
from rail.pki.operations import OperationError, issue_client_pem, request_problems, revoke
from rail.pki.registry import AddressConflictError, CertificateRecord
from rail.pki.source import RegistrySource
from rail.shared.mirror import MirrorError, synced
from rail.shared.registry import SharedSource, registry_source
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
    keys: KeyStore | None = None,
    after_rotation: Callable[[], object] | None = None,
    source: RegistrySource | None = None,
) -> Console:
    """``/console``'s resource; the CSRF secret is made here, once per start;
    ``policies`` returns the client limits and sandbox flags in force; ``keys`` are the
    DKIM keys the server signs with (re-read after a rotation, as on SIGHUP), and
    ``after_rotation`` is called on the reactor once they were (the DNS zones follow)."""

    def in_thread(work: Any) -> Any:
        return deferToThreadPool(reactor, reactor.getThreadPool(), work)

    def when() -> datetime:
        return datetime.fromtimestamp(reactor.seconds(), UTC)

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
        on_disk = KeyStore.open(config.data_dir / "dkim")
        now = reactor.seconds()
        found = []
        for domain in on_disk.domains():
            signing = on_disk.signing_keys(domain, now)
            if signing is not None:
                found.append(
                    DKIMSelectors(
                        domain,
                        signing.ed25519_selector,
                        signing.rsa_selector,
                        on_disk.activated_at(domain, now),
                        tuple(zone_line(domain, k) for k in on_disk.published(domain, None)),
                    )
                )
        return found

    def rotate_dkim(domain: str) -> Any:
        now = when()

        def rotate() -> Rotated:
            return rotate_domain(config, domain, now, source=home)

        def work() -> Rotated | str:
            try:
                if isinstance(home, SharedSource):  # stored, and every node told
                    rotated = synced(
                        home, config.data_dir, rotate, paths=("dkim/",), now=now.timestamp()
                    )
                else:
                    rotated = rotate()
            except (DomainError, DKIMKeyError, MirrorError) as error:
                return str(error)
            if keys is not None:
                try:
                    keys.reload()  # what SIGHUP does for DKIM keys
                except DKIMKeyError as error:
                    return (
                        f"the new keys were written, but the server cannot read them: {error};"
                        " it signs with the previous keys until a reload succeeds"
                    )
            return rotated

        def rotated(outcome: Rotated | str) -> Rotated | str:
            if not isinstance(outcome, str) and after_rotation is not None:
                after_rotation()
            return outcome

        return in_thread(work).addCallback(rotated)

    sources = ConsoleSources(
        store=store,
        clock=reactor,
        secret=_csrf_secret(home, reactor.seconds()),
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
        revoke=lambda serial: in_thread(lambda: revoke(config, serial, when(), source=home)),
        issuing=Issuing(
            check=lambda form: _issue_problems(config, form),
            issue=lambda form: in_thread(_issuer(config, form, when(), home)),
            key_types=KEY_TYPES,
            default_key_type=config.pki.key_type,
            default_days=int(config.pki.client_validity // 86400),
        ),
        rotate_dkim=rotate_dkim,
    )
    return Console(sources)


def _csrf_secret(source: RegistrySource, now: float) -> bytes:
    """Random, made at start; with the shared database, one for every node, so that a
    page served by one node may be posted to another (several nodes behind one name)."""
    if isinstance(source, SharedSource):
        return source.secret("console-csrf.key", lambda: os.urandom(32), now)
    return os.urandom(32)


def _days(text: str) -> int | None:
    """``--days`` as typed, or None if it is not a whole number; capped far above the
    longest validity allowed, so the request's check words the refusal."""
    if not (text.isascii() and text.isdigit()):
        return None
    return min(int(text[:9]), 10**6)


def _request(config: Config, form: IssueForm) -> ClientRequest:
    days = _days(form.days)
    seconds = days * 86400 if days is not None else config.pki.client_validity
    return ClientRequest(
        name=form.name,
        emails=form.emails,
        webhook=form.webhook,
        key_type=form.key_type or config.pki.key_type,
        validity=timedelta(seconds=seconds),
        admin=form.admin,
    )


def _events(form: IssueForm) -> list[str] | None:
    return [form.events] if form.events else None


def _issue_problems(config: Config, form: IssueForm) -> list[str]:
    """The form's problems, as ``rail certs issue`` words them (no I/O)."""
    if form.days and _days(form.days) is None:
        return [f"--days: invalid int value: {form.days!r}"]
    problems = request_problems(config, _request(config, form))
    try:
        check_events(config, _events(form), form.events_url, form.webhook, form.admin)
    except OperationError as error:
        problems += error.problems
    return problems


def _issuer(
    config: Config, form: IssueForm, now: datetime, source: RegistrySource
) -> Callable[[], Issued | list[str]]:
    """The issuing, to run in a thread: key, certificate, registry, event settings."""

    def work() -> Issued | list[str]:
        request = _request(config, form)
        try:
            types = check_events(config, _events(form), form.events_url, form.webhook, form.admin)
            issued = issue_client_pem(config, request, now, source=source)
        except (OperationError, AddressConflictError) as error:
            return list(error.problems)
        except PKIError as error:
            return [str(error)]
        try:
            lines = record_issue_events(config, request.name, types, form.events_url, now)
        except (OperationError, PKIError) as error:
            # The certificate exists: show it and its key, and why the events are not set.
            return Issued(issued, f"not set ({error}); set them with rail clients events")
        events = lines[0].split(None, 1)[1] if lines else None
        return Issued(issued, events)

    return work
