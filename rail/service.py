"""The service tree ``twistd rail`` runs: wiring only, no decisions.

Children are named so operators and later issues can find them (``https``; later
``submission``, ``inbound``, ``dns``, ``delivery``). Shutdown is ordered: readiness turns
503 first, then after ``shutdown.drain_delay`` the listeners close.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from prometheus_client import generate_latest
from twisted.application.service import MultiService, Service
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from rail.acme.challenges import PendingChallenges
from rail.acme.service import build_acme
from rail.bounces.secret import return_paths
from rail.config import Config, ConfigError
from rail.config.clients import ClientPolicies
from rail.config.errors import Problem
from rail.config.listen import ListenSpec
from rail.connections import GateLimits, listener_limits, raise_descriptor_limit
from rail.console.wiring import build_console
from rail.delivery.bounces import dsn_builder
from rail.delivery.resolve import make_resolver
from rail.delivery.service import build_delivery
from rail.delivery.stats import DeliveryStats
from rail.delivery.tlsreport import DISCARD
from rail.diskfull import is_disk_full
from rail.dkim.domains import local_domains
from rail.dkim.keys import DKIMKeyError, KeyStore
from rail.dns.service import build_dns
from rail.doctor.inputs import DoctorError
from rail.doctor.run import domains_report
from rail.events.subscriptions import Subscriptions
from rail.forward.bounces import dsn_recipient
from rail.forward.forwarding import Forwarding
from rail.forward.loops import forward_problems
from rail.forward.secret import load_secret
from rail.forward.srs import SRS
from rail.gate import SMTP_REFUSALS
from rail.inbound.directory import Directory, DirectoryService
from rail.inbound.verifier import Verifier
from rail.inbound.workers import Workers
from rail.listener import Listener, ListenError
from rail.mail.headers import HeaderLimits
from rail.notify import notify
from rail.pki.eventwatch import EventWatch
from rail.pki.files import PKIError
from rail.pki.operations import revoke
from rail.pki.revocationwatch import RevocationWatch
from rail.pki.source import FileSource, RegistrySource
from rail.pki.tls import ClientAuth, ServerTLS, replace_all
from rail.policy.rates import WINDOWS, ClientRates
from rail.quarantine import Quarantines
from rail.reactorlag import ReactorLag
from rail.refusals import Refusals
from rail.reload import Reloader
from rail.shared.acme import SharedChallenges, ordered_once, shared_material
from rail.shared.acme import lookup as shared_challenge
from rail.shared.follow import follow_dkim
from rail.shared.listen import Notifications
from rail.shared.mirror import synced
from rail.shared.registry import SharedSource, registry_source
from rail.smtp.bounceintake import BounceIntake
from rail.smtp.budget import DataBudget
from rail.smtp.factory import SMTPServerFactory
from rail.smtp.inbound import InboundSession
from rail.smtp.server import SMTPLimits
from rail.smtp.submission import SubmissionSession
from rail.staleresults import StaleResults
from rail.startup import PKIState, prepare_pki
from rail.store.configured import open_store
from rail.store.queuestore import QueueStore
from rail.store.reserve import RESERVE_NAME, settle
from rail.store.retention import RetentionService
from rail.store.service import StoreService
from rail.store.usagepoll import UsagePoller
from rail.tlsrpt.mailbox import ReportMailbox, report_address
from rail.tlsrpt.service import build_tlsrpt
from rail.web.health import Readiness
from rail.web.http80 import http80_site
from rail.web.mtasts import MTASTSPolicy
from rail.web.site import build_site
from rail.webhooks.eventstats import EventStats
from rail.webhooks.key import WebhookKey, load_or_create_key
from rail.webhooks.secretcli import REFRESH_INTERVAL as SECRETS_REFRESH
from rail.webhooks.secrets import read_secrets
from rail.webhooks.secretwatch import SecretsWatch
from rail.webhooks.service import build_webhooks, webhook_limits, webhook_policy
from rail.webhooks.webhookstats import WebhookStats
from rail.workers.child import AdoptedEndpoint
from rail.workers.metrics import Gather, PeerMetrics, peer_path
from rail.workers.plan import WorkerSpec

__all__ = ["RailService", "build_service"]

_log = Logger()


class RailService(MultiService):
    """Root of the tree; owns the drain-before-close shutdown order."""

    def __init__(self, config: Config, readiness: Readiness, clock: Any) -> None:
        super().__init__()
        self.setName("rail")
        self.config = config
        self.readiness = readiness
        self._clock = clock

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except ListenError as e:
            # twistd would print a traceback; an operator needs the one line.
            sys.stderr.write(f"rail: {e}\n")
            raise SystemExit(1) from None

    reloader: Reloader | None = None
    notifier: Callable[[str], str | None] = staticmethod(notify)
    """Where ``READY=1`` and ``STOPPING=1`` go: systemd, or a worker's parent."""

    def startService(self) -> None:
        super().startService()
        if self.reloader is not None:
            reloader, reactor = self.reloader, self._clock
            # The handler runs between bytecodes of whatever the reactor is doing; the
            # reload itself runs as a normal reactor call.
            signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(reloader.reload))
        _log.info(
            "rail {hostname} started; data in {data_dir}",
            hostname=self.config.hostname,
            data_dir=str(self.config.data_dir),
        )
        self._notify("READY=1")  # systemd Type=notify: every listener is bound by now

    def _notify(self, state: str) -> None:
        problem = self.notifier(state)
        if problem is not None:
            _log.warn("{problem}", problem=problem)

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        self._notify("STOPPING=1")
        self.readiness.draining = True
        delay = self.config.shutdown.drain_delay
        _log.info("draining: /readyz answers 503 for {delay}s before listeners close", delay=delay)
        if delay > 0:
            yield task.deferLater(self._clock, delay, lambda: None)
        # MultiService would stop every child at once; the store must close only after the
        # listeners have closed and their sessions finished, or in-flight mail gets 451.
        Service.stopService(self)
        children = list(self)
        first = [child for child in reversed(children) if child.name != "store"]
        yield defer.DeferredList([defer.maybeDeferred(child.stopService) for child in first])
        yield defer.DeferredList(
            [defer.maybeDeferred(child.stopService) for child in children if child.name == "store"]
        )
        _log.info("rail stopped")


def _listener(
    reactor: Any,
    spec: ListenSpec,
    tls: ServerTLS,
    factory: Any,
    name: str,
    grace: float,
    **bounds: Any,
) -> Listener:
    """A TCP listener with TLS on accept (HTTPS, SMTPS); ``bounds`` go to :class:`Listener`."""
    return _plain_listener(reactor, spec, factory, name, grace, tls=tls, **bounds)


def _plain_listener(
    reactor: Any, spec: ListenSpec, factory: Any, name: str, grace: float, **bounds: Any
) -> Listener:
    """A TCP listener without TLS on accept: port 25 (STARTTLS) and port 80."""
    fd = bounds.pop("fd", None)
    endpoint: Any
    if fd is not None:  # a worker: the parent bound it (rail.workers)
        endpoint = AdoptedEndpoint(reactor, fd)
    else:
        kind = TCP6ServerEndpoint if spec.kind == "tcp6" else TCP4ServerEndpoint
        endpoint = kind(reactor, spec.port, backlog=spec.backlog, interface=spec.interface)
    return Listener(endpoint, factory, reactor, grace=grace, name=name, **bounds)


def _valid_records(config: Config, source: RegistrySource | None = None) -> Any:
    """A reader of the registry's valid certificates, for the inbound directory (called at
    start-up, then from a worker thread); no registry yet means no certificates."""
    home = registry_source(config) if source is None else source

    def read(now: datetime) -> list[Any]:
        if not home.exists():
            return []
        with home.open() as registry:
            return registry.valid_records(now)

    return read


def local_domain_names(config: Config, now: datetime) -> list[str]:
    """Local domains: configured ones and those of valid certificates' sender addresses."""
    return sorted(local_domains(config, _valid_records(config)(now), now))


def dkim_domains(config: Config, now: datetime) -> list[str]:
    """Domains that sign mail: local domains (configured and from valid certificates'
    sender addresses) and the host name itself, which DSNs come from."""
    return sorted({*local_domain_names(config, now), config.hostname})


def settle_reserve(config: Config) -> None:
    """Free the disk reserve if the disk is nearly full, or make it if there is room
    (see :mod:`rail.store.reserve`); start-up goes on whatever happens here."""
    queue = config.data_dir / "queue"
    storage = config.storage
    try:
        action = settle(queue, storage.reserve, storage.min_free_space)
    except OSError as error:
        _log.error("cannot free the disk reserve: {error}", error=str(error))
        return
    if action == "released":
        _log.warn(
            "disk nearly full: freed the {size}-byte reserve in {path} so Rail can start and"
            " record deliveries; new mail is refused until free space is back",
            size=storage.reserve,
            path=str(queue / RESERVE_NAME),
        )
    elif action == "created":
        _log.info("disk reserve of {size} bytes allocated", size=storage.reserve)


def ensure_dkim_keys(keys: KeyStore, domains: list[str], now: float) -> None:
    """Create the DKIM keys of new ``domains``; on a full disk a domain's keys are left
    for later (its first signed message or a reload creates them) rather than stopping
    start-up."""
    for domain in domains:
        try:
            keys.ensure([domain], now)
        except DKIMKeyError as error:
            if not is_disk_full(error):
                raise
            _log.warn(
                "disk full: DKIM keys for {domain} not created now ({error}); they are made"
                " when mail from {domain} is signed or at a reload, once there is room",
                domain=domain,
                error=str(error),
            )


def _make_shared_files(config: Config, now: datetime) -> None:
    """Make what is missing of the files the nodes share: DKIM keys, the webhook signing
    key, the SRS and VERP secrets (the same loaders as a single node's start)."""
    ensure_dkim_keys(
        KeyStore.open(config.data_dir / "dkim"), dkim_domains(config, now), now.timestamp()
    )
    load_or_create_key(config.data_dir)
    load_secret(config.data_dir)
    return_paths(config)


def _dkim_guard(config: Config, source: RegistrySource, reactor: Any) -> Any:
    """With the shared database, keys made for a new domain (a new client's, at signing
    time or a reload) are made under the mirror's lock, after the other nodes' are
    copied, and stored for them: two nodes never sign one domain with different keys."""
    if not isinstance(source, SharedSource):
        return None
    return lambda make: synced(
        source, config.data_dir, make, paths=("dkim/",), now=reactor.seconds()
    )


def _challenge_lookup(reactor: Any, source: SharedSource) -> Any:
    """Port 80's answer to a token another node's ACME order committed (in a thread)."""

    def find(token: str) -> defer.Deferred[str | None]:
        return deferToThreadPool(
            reactor, reactor.getThreadPool(), lambda: shared_challenge(source, token)
        )

    return find


def _one_order(config: Config, reactor: Any, source: SharedSource, names: list[str]) -> Any:
    """An ACME order run by one node at a time (:func:`rail.shared.acme.ordered_once`)."""
    acme = config.tls.acme
    assert acme is not None
    return lambda run: ordered_once(
        source, config.data_dir, names, acme.renew_before, run, reactor.seconds
    )


def _follow_acme(config: Config, reactor: Any, source: SharedSource, service: Any) -> Any:
    """When another node stored a new ACME certificate: copy it in a thread, install it."""

    def follow() -> defer.Deferred[Any]:
        found: defer.Deferred[Any] = deferToThreadPool(
            reactor,
            reactor.getThreadPool(),
            lambda: shared_material(source, config.data_dir, reactor.seconds()),
        )

        def offer(material: Any) -> Any:
            return service.offer(material) if material is not None else None

        def failed(failure: Any) -> None:
            _log.error(
                "the ACME certificate another node got is not installed: {error}",
                error=failure.getErrorMessage(),
            )

        return found.addCallback(offer).addErrback(failed)

    return follow


def webhook_signing_key(config: Config) -> WebhookKey:
    """The webhook signing key; on a full disk where none was saved yet, one kept in
    memory until a start that can save its own."""
    try:
        return load_or_create_key(config.data_dir)
    except PKIError as error:
        if not is_disk_full(error):
            raise
        _log.warn(
            "disk full: webhook signing key not saved ({error}); signing with a key kept in"
            " memory, which the next start replaces",
            error=str(error),
        )
        return WebhookKey(ed25519.Ed25519PrivateKey.generate())


def _webhook_secrets(config: Config, source: RegistrySource) -> Any:
    """The rotated webhook secrets at start-up; none (derived secrets only) if they cannot
    be read, which the first refresh reports."""
    try:
        return read_secrets(_secrets_home(config, source))
    except PKIError as error:
        _log.error("cannot read the webhook secrets: {error}", error=str(error))
        return {}


def _secrets_home(config: Config, source: RegistrySource) -> Path | RegistrySource:
    """Where the webhook secrets are: beside the registry (the data directory's file, as
    before, or the shared database)."""
    return config.data_dir if isinstance(source, FileSource) else source


def webhook_settings(config: Config) -> tuple[Any, Any, float]:
    """What a reload changes in the webhook dispatcher: policy, limits, timeout."""
    return webhook_policy(config), webhook_limits(config), config.webhooks.timeout


def build_service(
    config: Config,
    reactor: Any,
    pki: PKIState | None = None,
    config_path: Path | None = None,
    worker: WorkerSpec | None = None,
) -> RailService:
    """Build the whole tree; ``pki`` may be passed in by tests that prepared it; with
    ``config_path``, SIGHUP reloads from it. ``worker``: this process is one of several
    (``--workers``): it serves on the parent's sockets, and only worker 0 does what must
    run once per host (retention purges, sending TLS-RPT reports); ACME orders are one at
    a time across processes and nodes already (:mod:`rail.shared.acme`)."""
    once_per_host = worker is None or worker.runs_singletons
    now = datetime.fromtimestamp(reactor.seconds(), UTC)
    # First, so that on a full disk the start-up below has the reserve's room.
    settle_reserve(config)
    source = pki.source if pki is not None and pki.source is not None else registry_source(config)
    if isinstance(source, SharedSource):
        # Keys, secrets and the ACME certificate every node must hold alike: copied from
        # the shared database, and those missing made by one node and stored there
        # (rail.shared.mirror); before the PKI, which serves the ACME certificate.
        synced(
            source, config.data_dir, lambda: _make_shared_files(config, now), now=now.timestamp()
        )
    if pki is None:
        pki = prepare_pki(config, now)
    keys = KeyStore.open(config.data_dir / "dkim", guard=_dkim_guard(config, source, reactor))
    ensure_dkim_keys(keys, dkim_domains(config, now), now.timestamp())
    # Forwarding (SRS): the secret is read, or made, here, before the reactor runs.
    srs = SRS(load_secret(config.data_dir))
    unwrap = dsn_recipient(srs, reactor.seconds)
    store = open_store(config, reactor)
    settle_reserve(config)  # on a first start, the queue directory exists only now
    webhook_key = webhook_signing_key(config)
    webhook_key.use_secrets(_webhook_secrets(config, source))
    verp = return_paths(config)  # None when bounces.enabled is false
    readiness = Readiness()
    root = RailService(config, readiness, reactor)
    # First child, so it stops last: after every listener has closed.
    StoreService(store).setServiceParent(root)
    retention = config.storage.retention
    if once_per_host:
        RetentionService(
            reactor, store, body=retention.body, record=retention.record
        ).setServiceParent(root)
    stats = DeliveryStats(reactor.seconds())
    # How late the reactor runs a timer due every 100 ms: /metrics and /stats show it.
    reactor_lag = ReactorLag(reactor, stats.registry)
    reactor_lag.setServiceParent(root)
    stats.add_section("reactor_lag_seconds", reactor_lag.summary)
    # Listeners and protocols report what their bounds refuse; /metrics shows the counts.
    refusals = Refusals(reactor, registry=stats.registry)
    gates = _connection_limits(config)

    def bounded(name: str, replies: Any = None) -> dict[str, Any]:
        """What a listener's bounds are: its gate, the TLS handshake deadline."""
        return {
            "gate": gates.get(name),
            "refusals": refusals,
            "replies": replies,
            "handshake_timeout": config.limits.connections.tls_handshake_timeout,
            "fd": worker.fds.get(name) if worker is not None else None,
        }

    # Every quarantined message, outbound or inbound: one log line, rail_quarantined_total.
    store.observe_quarantined(Quarantines(registry=stats.registry))
    # Every result ignored because another node took its job: one line, rail_stale_results_total.
    store.observe_stale(StaleResults(registry=stats.registry))
    # One DATA memory budget for all SMTP sessions, submission and inbound.
    data_budget = DataBudget(config.limits.data_memory)
    tls_contexts: list[ServerTLS] = []
    hooks: list[Any] = []
    # The CRL file is looked at every second and on SIGHUP, in a thread; handshakes,
    # MAIL FROM and HTTP requests consult the set it loaded.
    revocation_watch = RevocationWatch(
        pki.revocations,
        clock=reactor,
        in_thread=lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f),
    )
    revocation_watch.setServiceParent(root)
    hooks.append(lambda _config: revocation_watch.refresh())
    revocations = pki.revocations
    event_watch = _event_watch(config, reactor, store, hooks, source)
    event_watch.setServiceParent(root)
    # With the shared database, other nodes' changes arrive as notifications too: the
    # same reads as every second, at once (docs/scaling.md).
    notifications = None
    if config.storage.backend == "postgresql" and config.storage.dsn is not None:
        notifications = Notifications(config.storage.dsn, call_from_thread=reactor.callFromThread)
        notifications.setServiceParent(root)
        notifications.subscribe("revocations", revocation_watch.refresh)
        notifications.subscribe("client_events", event_watch.refresh)

    def revoked() -> frozenset[int]:
        return revocations.serials

    # Per-client limits and sandbox flags, replaced whole on SIGHUP.
    clients = [ClientPolicies.from_config(config)]
    hooks.append(lambda new: clients.__setitem__(0, ClientPolicies.from_config(new)))
    rates = ClientRates(reactor, lambda name: clients[0].limits(name))
    store.use_sandboxed(lambda name: clients[0].sandbox(name))
    # Started after the store (a later child), so the seed is read on its read thread.
    if store.shared:  # every node's acceptances, from the shared usage rows
        usage_poll = UsagePoller(reactor, store, rates)
        usage_poll.setServiceParent(root)
        stats.add_section("shared_rate_limits", usage_poll.summary)
    else:
        _OnStart(lambda: seed_rates(rates, reactor, store)).setServiceParent(root)
    secrets = SecretsWatch(
        webhook_key,
        _secrets_home(config, source),
        clock=reactor,
        in_thread=lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f),
        interval=SECRETS_REFRESH,
    )
    secrets.setServiceParent(root)
    hooks.append(lambda _config: secrets.refresh())
    if notifications is not None:
        notifications.subscribe("webhook_secrets", secrets.refresh)
    mta_sts = MTASTSPolicy.from_config(config)
    hooks.append(mta_sts.update)
    gather_metrics = None
    if worker is not None:  # /stats is the answering worker's: say which
        place = {"index": worker.index, "count": worker.count}
        stats.add_section("worker", lambda: place)
    if worker is not None and worker.peers:
        # A scrape reaches one worker: it gathers the others' metrics (rail.workers.metrics).
        PeerMetrics(
            reactor,
            peer_path(worker.peers, worker.index),
            lambda: bytes(generate_latest(stats.registry)),
        ).setServiceParent(root)
        gather_metrics = Gather(
            reactor,
            worker,
            lambda f, *a: deferToThreadPool(reactor, reactor.getThreadPool(), f, *a),
        )
    # After the console rotated DKIM keys (and the server re-read them): the DNS zones
    # follow, once the DNS service below exists.
    after_rotation: list[Callable[[], object]] = []
    if worker is not None:  # the other workers re-read the keys too (a SIGHUP each)
        after_rotation.append(lambda: root.notifier("RELOAD=1"))
    if config.listen.https is not None:
        auth = ClientAuth(ca=pki.ca.certificate, revocations=pki.revocations, required=False)
        tls = ServerTLS(pki.server, auth)
        tls_contexts.append(tls)
        site = build_site(
            ca=pki.ca.certificate,
            revoked=revoked,
            readiness=readiness,
            clock=reactor,
            max_body=config.limits.http_body_size,
            idle_timeout=config.limits.http_idle_timeout,
            store=store,
            hostname=config.hostname,
            max_message_size=config.limits.message_size,
            max_recipients=config.limits.max_recipients,
            header_limits=header_limits(config),
            refusals=refusals,
            in_thread=lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f),
            stats=stats,
            webhook_key=webhook_key,
            mta_sts=mta_sts,
            deadlines=_http_deadlines(config, refusals),
            public_stats=config.web.public_stats,
            gather_metrics=gather_metrics,
            dsn=dsn_builder(
                config.hostname, reactor.seconds, reactor.callFromThread, recipient=unwrap
            ),
            domains=_doctor_report(config, reactor, hooks),
            client_events=event_watch,
            rates=rates,
            rotate_secret=secrets.rotate,
            console=build_console(
                config,
                reactor,
                store,
                stats,
                dsn_builder(
                    config.hostname, reactor.seconds, reactor.callFromThread, recipient=unwrap
                ),
                _doctor_report(config, reactor, hooks),
                lambda: clients[0],
                lambda: tls.certificate,
                keys,
                lambda: [follow() for follow in after_rotation],
                source=source,
            ),
            revoke_certificate=_revoker(config, reactor, source, revocation_watch),
        )
        _listener(
            reactor,
            config.listen.https,
            tls,
            site,
            "https",
            config.shutdown.grace_period,
            **bounded("https"),
        ).setServiceParent(root)
    if config.listen.submission is not None:
        auth = ClientAuth(ca=pki.ca.certificate, revocations=pki.revocations, required=True)
        factory = SMTPServerFactory(
            lambda: SubmissionSession(
                store,
                reactor,
                config.hostname,
                revoked=revoked,
                header_limits=header_limits(config),
                refusals=refusals,
                rates=rates,
                count_accepted=stats.accepted,
            ),
            hostname=config.hostname,
            limits=smtp_limits(config),
            clock=reactor,
            budget=data_budget,
            refusals=refusals,
            name="submission",
        )
        submission_tls = ServerTLS(pki.server, auth)
        tls_contexts.append(submission_tls)
        _listener(
            reactor,
            config.listen.submission,
            submission_tls,
            factory,
            "submission",
            config.shutdown.grace_period,
            **bounded("submission"),
        ).setServiceParent(root)
    dns = build_dns(
        config,
        reactor,
        keys,
        gate=gates.get("dns"),
        refusals=refusals,
        # The store's indexed query on its read thread, not a connection of its own.
        oldest_pending=store.oldest_pending_received_at,
        adopt=(worker.fds["dns"], worker.fds["dns-udp"])
        if worker is not None and "dns" in worker.fds
        else None,
    )
    if dns is not None:
        dns.setServiceParent(root)
        hooks.append(dns.refresh)
        after_rotation.append(dns.refresh)
    if notifications is not None and isinstance(source, SharedSource):
        notifications.subscribe(
            "files",
            follow_dkim(
                source,
                config.data_dir,
                keys,
                dns.refresh if dns is not None else None,
                lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f),
            ),
        )
    certificates: Directory | None = None  # the client's webhooks, for events
    if config.listen.inbound is not None:
        directory = Directory(
            config,
            _valid_records(config, source),
            clock=reactor,
            in_thread=lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f),
        )
        directory.load()
        loops = forward_problems(directory.current())
        if loops:  # fail closed, as rail config-check does
            raise ConfigError([Problem(*line.split(": ", 1)) for line in loops])
        DirectoryService(directory).setServiceParent(root)
        certificates = directory
        forwarding = Forwarding.in_pool(
            reactor,
            srs=srs,
            keys=keys,
            authserv_id=config.hostname,
            refusals=refusals,
        )

        def follow(new: Config) -> None:
            directory.reconfigure(new)
            directory.refresh()
            for loop in forward_problems(directory.current()):  # reloaded: said, not refused
                _log.error("inbound routing: {problem}", problem=loop)

        hooks.append(follow)
        cached = Workers(reactor, name="rail-verify")
        cached.setServiceParent(root)
        verifier = Verifier(
            reactor, make_resolver(config.inbound.nameservers, reactor), cached=cached
        )
        inbound_tls = ServerTLS(pki.server, None)
        tls_contexts.append(inbound_tls)
        inbound_settings = [config.inbound]
        hooks.append(lambda c: inbound_settings.__setitem__(0, c.inbound))
        # Reports to the TLS-RPT address Rail publishes (dns.tls_rpt) become a metric.
        own = {*local_domain_names(config, now), config.hostname}
        rua = report_address(config.dns.tls_rpt, own)
        reports = (
            ReportMailbox(
                rua,
                lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f),
                registry=stats.registry,
            )
            if rua is not None
            else None
        )
        # Port 25's per-address bound (inbound.max_connections_per_ip) is its gate's.
        inbound_factory = SMTPServerFactory(
            lambda: InboundSession(
                store=store,
                verifier=verifier,
                recipients=directory.current,
                settings=inbound_settings[0],
                clock=reactor,
                hostname=config.hostname,
                header_limits=header_limits(config),
                refusals=refusals,
                forwarding=forwarding,
                reports=reports,
                bounces=None
                if verp is None
                else BounceIntake(
                    store=store,
                    paths=verp,
                    max_size=config.bounces.max_report_size,
                    clock=reactor,
                    in_thread=lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f),
                    refusals=refusals,
                ),
            ),
            hostname=config.hostname,
            limits=smtp_limits(config),
            clock=reactor,
            starttls=inbound_tls,
            budget=data_budget,
            refusals=refusals,
            name="inbound",
        )
        _plain_listener(
            reactor,
            config.listen.inbound,
            inbound_factory,
            "inbound",
            config.shutdown.grace_period,
            **bounded("inbound", SMTP_REFUSALS),
        ).setServiceParent(root)
    if certificates is None:
        # Events go to a client's certificate webhook unless it subscribed with a URL.
        certificates = Directory(
            config,
            _valid_records(config, source),
            clock=reactor,
            in_thread=lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f),
        )
        certificates.load()
        DirectoryService(certificates).setServiceParent(root)
    webhook_urls = certificates
    if notifications is not None:
        follower = certificates
        notifications.subscribe("certificates", follower.refresh)
        notifications.subscribe("revocations", follower.refresh)
    event_stats = EventStats(stats.registry)
    stats.add_section("events", event_stats.summary)
    stats.add_refresh(lambda: store.event_counts().addCallback(event_stats.set_jobs))
    webhook_stats = WebhookStats(stats.registry)
    stats.add_section("webhooks", webhook_stats.summary)
    stats.add_refresh(lambda: store.webhook_counts().addCallback(webhook_stats.set_jobs))
    webhooks = build_webhooks(
        config,
        reactor,
        store,
        webhook_key,
        observer=webhook_stats,
        webhook_url=lambda client: webhook_urls.current().webhooks.get(client),
        event_observer=event_stats,
    )
    webhooks.setServiceParent(root)
    hooks.append(lambda c: webhooks.reconfigure(*webhook_settings(c)))
    if config.tls.mode == "acme":
        shared = source if isinstance(source, SharedSource) else None
        challenges = (
            PendingChallenges() if shared is None else SharedChallenges(shared, reactor.seconds)
        )
        if config.listen.http is not None:
            _plain_listener(
                reactor,
                config.listen.http,
                http80_site(
                    config.hostname,
                    challenges,
                    clock=reactor,
                    idle_timeout=config.limits.http_idle_timeout,
                    deadlines=_http_deadlines(config, refusals),
                    lookup=None if shared is None else _challenge_lookup(reactor, shared),
                ),
                "http",
                config.shutdown.grace_period,
                **bounded("http"),
            ).setServiceParent(root)
        # With several nodes, one certificate names them all: any node may serve it.
        hosts = [node.hostname for node in config.dns.nodes] or [config.hostname]
        names = [*hosts, *(f"mta-sts.{d}" for d in local_domain_names(config, now))]
        contexts = tls_contexts

        def install(material: Any) -> defer.Deferred[None]:
            # The new contexts are built in a thread, then swapped in together.
            return replace_all(
                contexts,
                material,
                lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f),
            )

        acme_service = build_acme(
            config,
            reactor,
            install=install,
            names=names,
            challenges=challenges,
            order=None if shared is None else _one_order(config, reactor, shared, names),
        )
        acme_service.setServiceParent(root)
        if notifications is not None and shared is not None:
            notifications.subscribe("acme", _follow_acme(config, reactor, shared, acme_service))
    elif config.listen.http is not None:
        _plain_listener(
            reactor,
            config.listen.http,
            http80_site(
                config.hostname,
                PendingChallenges(),
                clock=reactor,
                idle_timeout=config.limits.http_idle_timeout,
                deadlines=_http_deadlines(config, refusals),
            ),
            "http",
            config.shutdown.grace_period,
            **bounded("http"),
        ).setServiceParent(root)
    delivery = None
    if config.delivery.hold:
        _log.warn("delivery.hold is set: accepted mail stays queued, nothing is delivered")
    else:
        # TLS-RPT counts what delivery reports; added first so it stops after delivery.
        tlsrpt = (
            build_tlsrpt(config, reactor, store, report=once_per_host)
            if config.tlsrpt.enabled
            else None
        )
        if tlsrpt is not None:
            tlsrpt.setServiceParent(root)
        # Sessions with a smarthost are not about any recipient domain's policy.
        relayed = config.delivery.smarthost is not None
        outcomes = tlsrpt.sink if tlsrpt is not None and not relayed else DISCARD
        delivery = build_delivery(
            config,
            reactor,
            store,
            keys,
            stats,
            outcomes=outcomes,
            sandboxed=lambda name: clients[0].sandbox(name),
            dsn_recipient=unwrap,
            return_paths=verp,
        )
        delivery.setServiceParent(root)
    if config_path is not None:
        root.reloader = Reloader(
            config_path=config_path,
            config=config,
            ca=pki.ca,
            tls=tls_contexts,
            keys=keys,
            scheduler=delivery.scheduler if delivery is not None else None,
            dkim_domains=lambda c: dkim_domains(c, datetime.fromtimestamp(reactor.seconds(), UTC)),
            now=reactor.seconds,
            hooks=hooks,
            # Config, certificates, TLS contexts, DKIM keys, the registry: off the reactor.
            in_thread=lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f),
        )
    return root


def _revoker(config: Config, reactor: Any, source: RegistrySource, watch: RevocationWatch) -> Any:
    """The admin API's revocation: the registry and CRL in a thread (as ``rail certs
    revoke``), then this node's revocations loaded before the answer."""

    def revoke_certificate(serial: str) -> defer.Deferred[Any]:
        now = datetime.fromtimestamp(reactor.seconds(), UTC)
        done: defer.Deferred[Any] = deferToThreadPool(
            reactor, reactor.getThreadPool(), lambda: revoke(config, serial, now, source=source)
        )
        return done.addCallback(lambda records: watch.refresh().addCallback(lambda _: records))

    return revoke_certificate


def _event_watch(
    config: Config, reactor: Any, store: QueueStore, hooks: list[Any], source: RegistrySource
) -> EventWatch:
    """Which events each client gets, read from the registry now (so the first message
    finds them), then every second and on SIGHUP in a thread, into the store's writer."""
    webhooks = [config.webhooks]
    hooks.append(lambda c: webhooks.__setitem__(0, c.webhooks))

    def install(subscriptions: Subscriptions) -> None:
        store.subscriptions = subscriptions

    watch = EventWatch(
        source,
        install,
        clock=reactor,
        in_thread=lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f),
        now=lambda: datetime.fromtimestamp(reactor.seconds(), UTC),
        allow_http_loopback=lambda: webhooks[0].allow_http_loopback and webhooks[0].allow_private,
    )
    watch.load()
    hooks.append(lambda _config: watch.refresh())
    return watch


class _OnStart(Service):
    """Runs ``work`` when started (after the services added before it)."""

    def __init__(self, work: Any) -> None:
        self._work = work

    def startService(self) -> None:
        super().startService()
        self._work()


def seed_rates(rates: ClientRates, reactor: Any, store: QueueStore) -> defer.Deferred[None]:
    """Add the last day's mail, read on the store's read thread, to the per-client rate
    counters (counts made meanwhile are kept, and added to); fires when done."""
    # Mail accepted from now on is counted as it comes; the seed is what came before.
    started = reactor.seconds()
    since = started - WINDOWS["messages_per_day"][0]

    def seeded(rows: list[tuple[str, float, int, int]]) -> None:
        rates.seed(rows)
        clients = len({row[0] for row in rows})
        _log.info("rate limits: counted the last day's mail of {count} clients", count=clients)

    def failed(failure: Any) -> None:
        _log.error(
            "rate limits: cannot read the last day's mail ({error}); counting from zero",
            error=failure.getErrorMessage(),
        )

    return store.client_usage(since, started).addCallbacks(seeded, failed)


def _http_deadlines(config: Config, refusals: Refusals) -> dict[str, Any]:
    """The request deadlines of an HTTP site (see :class:`rail.web.site.RailSite`)."""
    limits = config.limits
    return {
        "header_timeout": limits.http_header_timeout,
        "body_grace": limits.http_body_grace,
        "body_min_rate": limits.http_min_body_rate,
        "refusals": refusals,
    }


def _connection_limits(config: Config) -> dict[str, GateLimits]:
    """Raise the descriptor limit and size each TCP listener's gate from it."""
    descriptors = raise_descriptor_limit()
    gates = listener_limits(config, descriptors.soft)
    _log.info(
        "descriptors: soft limit {before} raised to {soft} (hard {hard});"
        " connections per listener: {caps}",
        before=descriptors.before,
        soft=descriptors.soft,
        hard=descriptors.hard,
        caps=", ".join(f"{name} {gate.max_connections}" for name, gate in gates.items()),
    )
    return gates


def _doctor_report(config: Config, reactor: Any, hooks: list[Any]) -> Any:
    """``rail doctor``'s report for ``/api/v1/admin/domains``, for the configuration in
    force (followed across SIGHUP); a domain that is not local is a LookupError."""
    current = [config]
    hooks.append(lambda new: current.__setitem__(0, new))

    def in_thread(work: Any) -> Any:
        return deferToThreadPool(reactor, reactor.getThreadPool(), work)

    def not_local(failure: Any) -> Any:
        failure.trap(DoctorError)
        raise LookupError(str(failure.value))

    def report(domain: str | None) -> Any:
        return domains_report(current[0], reactor, in_thread, domain=domain).addErrback(not_local)

    return report


def header_limits(config: Config) -> HeaderLimits:
    """The header section bounds every intake (465, 25, the API) applies."""
    return HeaderLimits(size=config.limits.header_size, fields=config.limits.header_fields)


def smtp_limits(config: Config) -> SMTPLimits:
    limits = config.limits
    return SMTPLimits(
        message_size=limits.message_size,
        max_recipients=limits.max_recipients,
        idle_timeout=limits.smtp_idle_timeout,
        transaction_timeout=limits.smtp_transaction_timeout,
        bad_commands=limits.smtp_bad_commands,
        command_timeout=limits.smtp_command_timeout,
        idle_commands=limits.smtp_idle_commands,
    )
