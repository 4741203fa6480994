"""The service tree ``twistd rail`` runs: wiring only, no decisions.

Children are named so operators and later issues can find them (``https``; later
``submission``, ``inbound``, ``dns``, ``delivery``). Shutdown is ordered: readiness turns
503 first, then after ``shutdown.drain_delay`` the listeners close.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import defer, task
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.logger import Logger

from rail.config import Config
from rail.config.listen import ListenSpec
from rail.listener import Listener, ListenError
from rail.pki.startup import PKIState, prepare_pki
from rail.pki.tls import ClientAuth, ServerTLS
from rail.smtp.factory import SMTPServerFactory
from rail.smtp.server import SMTPLimits
from rail.smtp.submission import SubmissionSession
from rail.store.service import StoreService
from rail.store.sqlite import SQLiteStore
from rail.web.health import Readiness
from rail.web.site import build_site

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

    def startService(self) -> None:
        super().startService()
        _log.info(
            "rail {hostname} started; data in {data_dir}",
            hostname=self.config.hostname,
            data_dir=str(self.config.data_dir),
        )

    @defer.inlineCallbacks
    def stopService(self) -> Any:
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
    reactor: Any, spec: ListenSpec, tls: ServerTLS, factory: Any, name: str, grace: float
) -> Listener:
    endpoint = SSL4ServerEndpoint(
        reactor, spec.port, tls, backlog=spec.backlog, interface=spec.interface
    )
    listener = Listener(endpoint, factory, reactor, grace=grace)
    listener.setName(name)
    return listener


def build_service(config: Config, reactor: Any, pki: PKIState | None = None) -> RailService:
    """Build the whole tree; ``pki`` may be passed in by tests that prepared it."""
    if pki is None:
        pki = prepare_pki(config, datetime.fromtimestamp(reactor.seconds(), UTC))
    store = SQLiteStore.open(
        config.data_dir / "queue",
        reactor,
        max_queued=config.storage.max_queued,
        min_free_bytes=config.storage.min_free_space,
    )
    readiness = Readiness()
    root = RailService(config, readiness, reactor)
    # First child, so it stops last: after every listener has closed.
    StoreService(store).setServiceParent(root)
    if config.listen.https is not None:
        auth = ClientAuth(ca=pki.ca.certificate, revocations=pki.revocations, required=False)
        tls = ServerTLS(pki.server, auth)
        site = build_site(
            ca=pki.ca.certificate,
            revoked=pki.revocations.current,
            readiness=readiness,
            clock=reactor,
            max_body=config.limits.http_body_size,
            idle_timeout=config.limits.http_idle_timeout,
            store=store,
            hostname=config.hostname,
            max_message_size=config.limits.message_size,
            max_recipients=config.limits.max_recipients,
        )
        _listener(
            reactor, config.listen.https, tls, site, "https", config.shutdown.grace_period
        ).setServiceParent(root)
    if config.listen.submission is not None:
        auth = ClientAuth(ca=pki.ca.certificate, revocations=pki.revocations, required=True)
        factory = SMTPServerFactory(
            lambda: SubmissionSession(store, reactor, config.hostname),
            hostname=config.hostname,
            limits=smtp_limits(config),
            clock=reactor,
        )
        _listener(
            reactor,
            config.listen.submission,
            ServerTLS(pki.server, auth),
            factory,
            "submission",
            config.shutdown.grace_period,
        ).setServiceParent(root)
    return root


def smtp_limits(config: Config) -> SMTPLimits:
    limits = config.limits
    return SMTPLimits(
        message_size=limits.message_size,
        max_recipients=limits.max_recipients,
        idle_timeout=limits.smtp_idle_timeout,
        transaction_timeout=limits.smtp_transaction_timeout,
        bad_commands=limits.smtp_bad_commands,
    )
