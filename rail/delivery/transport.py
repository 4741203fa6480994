"""Wiring of how outbound mail travels: routes with TLS requirements, and what connects.

From the configuration: the smarthost (its route, its verified or implicit TLS, its
login) or recipients' MX hosts under their MTA-STS policies (the policy cache, its
fetcher, the trust anchors); and the TLS contexts both use. Built once at start, where
reading the trust store, a CA file and the relay's password file is allowed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IResolver
from twisted.internet.threads import deferToThreadPool

from rail.config import Config
from rail.config.schema import Smarthost
from rail.delivery.client import ClientTimeouts
from rail.delivery.connect import open_session
from rail.delivery.danecheck import dane_check
from rail.delivery.danelookup import with_dane
from rail.delivery.dnssec import DaneResolver
from rail.delivery.mtasts import STSPolicies
from rail.delivery.resolve import Route, resolve_route, smarthost_route
from rail.delivery.smtpauth import Credentials
from rail.delivery.stsfetch import PolicyFetcher
from rail.delivery.stsroute import apply_policy, policy_domain, policy_route
from rail.delivery.tlspolicy import TLSRequirement, smarthost_requirement
from rail.delivery.tlsreport import TLSOutcomeSink
from rail.delivery.tlsverify import TLSContexts

__all__ = ["POLICY_CACHE", "Transport", "TransportError", "build_transport", "read_password"]

POLICY_CACHE = "mta-sts/policies.json"
"""Where, under ``data_dir``, fetched MTA-STS policies are kept across restarts."""


@attrs.frozen
class Transport:
    """What the scheduler's ``route`` and ``connect`` need."""

    route: Callable[[str], Deferred[Route]]
    port: int
    timeouts: ClientTimeouts
    contexts: TLSContexts
    outcomes: TLSOutcomeSink
    credentials: Credentials | None = None
    policies: STSPolicies | None = None

    def connector(
        self, reactor: Any, helo_name: str, connect_timeout: float
    ) -> Callable[[str, str, TLSRequirement], Deferred[Any]]:
        """The scheduler's ``connect(address, host_name, tls)``."""

        def connect(address: str, host: str, tls: TLSRequirement) -> Deferred[Any]:
            return Deferred.fromCoroutine(
                open_session(
                    reactor,
                    address,
                    self.port,
                    helo_name=helo_name,
                    clock=reactor,
                    timeouts=self.timeouts,
                    connect_timeout=connect_timeout,
                    requirement=tls,
                    server_name=host,
                    contexts=self.contexts,
                    outcomes=self.outcomes,
                    credentials=self.credentials,
                )
            )

        return connect


class TransportError(Exception):
    """A file the transport needs (CA file, password file) cannot be used; the message
    names it and is all an operator needs (no traceback)."""


def read_password(path: Any, setting: str = "delivery.smarthost.auth.password_file") -> str:
    """The first line of the password file, without its line end."""
    try:
        with open(path, encoding="utf-8") as f:
            password = f.readline().rstrip("\r\n")
    except (OSError, UnicodeError) as e:
        raise TransportError(f"{setting}: cannot read {path}: {e}") from None
    if not password or "\0" in password:
        raise TransportError(f"{setting}: {path} holds no usable password on its first line")
    return password


def _contexts(ca_file: str | None, setting: str) -> TLSContexts:
    try:
        return TLSContexts(ca_file)
    except SSL.Error as e:
        raise TransportError(f"{setting}: cannot load {ca_file} as PEM certificates: {e}") from None


def build_transport(
    config: Config,
    reactor: Any,
    resolver: IResolver,
    rng: random.Random,
    outcomes: TLSOutcomeSink,
) -> Transport:
    """The transport for ``config``; see the module docstring."""
    delivery = config.delivery
    if delivery.smarthost is not None:
        return _smarthost(delivery.smarthost, resolver, outcomes)
    sts = delivery.mta_sts
    ca_file = str(sts.ca_file) if sts.ca_file is not None else None
    contexts = _contexts(ca_file, "delivery.mta_sts.ca_file")
    contexts.dane_check = dane_check(reactor.seconds)
    policies = None
    if sts.enabled:
        policies = STSPolicies(
            reactor,
            PolicyFetcher(
                reactor, resolver, contexts, port=sts.port, allow_private=sts.allow_private
            ),
            outcomes=outcomes,
            path=config.data_dir / POLICY_CACHE,
            run_in_thread=lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f),
        )

    def route(domain: str) -> Deferred[Route]:
        routing = resolve_route(resolver, domain, rng)
        name = policy_domain(domain)
        if policies is None or name is None:
            return routing.addCallback(apply_policy, domain, None)
        return Deferred.fromCoroutine(
            policy_route(routing, policies.policy(name), domain, ca_file, outcomes)
        )

    routed: Callable[[str], Deferred[Route]] = route
    if delivery.dane and delivery.dane_resolver is not None:
        lookups = DaneResolver(
            delivery.dane_resolver,
            lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f),
        )
        routed = with_dane(route, lookups, outcomes)
    return Transport(routed, delivery.port, ClientTimeouts(), contexts, outcomes, None, policies)


def _smarthost(smarthost: Smarthost, resolver: IResolver, outcomes: TLSOutcomeSink) -> Transport:
    ca_file = str(smarthost.ca_file) if smarthost.ca_file is not None else None
    requirement = smarthost_requirement(smarthost.host, smarthost.tls, ca_file)
    auth = smarthost.auth
    credentials = None
    if auth is not None:
        credentials = Credentials(auth.username, read_password(auth.password_file))

    def with_tls(route: Route) -> Route:
        hosts = tuple(attrs.evolve(host, tls=requirement) for host in route.hosts)
        return attrs.evolve(route, hosts=hosts)

    def route(domain: str) -> Deferred[Route]:
        routing = smarthost_route(resolver, smarthost.host, smarthost.port)
        return routing.addCallback(with_tls)

    return Transport(
        route,
        smarthost.port,
        ClientTimeouts(),
        _contexts(ca_file, "delivery.smarthost.ca_file"),
        outcomes,
        credentials,
    )
