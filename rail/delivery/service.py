"""Wiring of outbound delivery: resolver, SMTP client, DKIM signer, DSNs and the scheduler.

Builds the :class:`Scheduler` from the configuration and runs it as the ``delivery``
service. It stops before the store closes (the root service stops the store last), giving
running transactions ``shutdown.grace_period`` seconds.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from rail.config import Config
from rail.delivery.bounces import dsn_builder
from rail.delivery.client import ClientTimeouts
from rail.delivery.connect import open_session
from rail.delivery.decide import RetryPolicy
from rail.delivery.resolve import Route, make_resolver, resolve_route, smarthost_route
from rail.delivery.scheduler import DeliveryLimits, IAttemptObserver, Scheduler, Session
from rail.delivery.signing import Signer
from rail.dkim.keys import KeyStore
from rail.store.model import IDeliveryQueue

__all__ = ["DeliveryService", "build_delivery"]


class DeliveryService(Service):
    """Runs the scheduler between start and stop."""

    def __init__(self, scheduler: Scheduler, grace: float) -> None:
        self.scheduler = scheduler
        self._grace = grace
        self.setName("delivery")

    def startService(self) -> None:
        super().startService()
        self.scheduler.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return self.scheduler.stop(self._grace)


def build_delivery(
    config: Config,
    reactor: Any,
    queue: IDeliveryQueue,
    keys: KeyStore,
    observer: IAttemptObserver,
    rng: random.Random | None = None,
) -> DeliveryService:
    """The ``delivery`` service for ``config``."""
    delivery = config.delivery
    rng = rng or random.SystemRandom()
    resolver = make_resolver(delivery.nameservers, reactor)
    smarthost = delivery.smarthost
    timeouts = ClientTimeouts()
    port = smarthost.port if smarthost else delivery.port
    tls_mode = smarthost.tls if smarthost else "opportunistic"
    tls_hostname = smarthost.host if smarthost else None

    def route(domain: str) -> Deferred[Route]:
        if smarthost is not None:
            return smarthost_route(resolver, smarthost.host, smarthost.port)
        return resolve_route(resolver, domain, rng)

    def connect(address: str, host: str) -> Deferred[Session]:
        return Deferred.fromCoroutine(
            open_session(
                reactor,
                address,
                port,
                helo_name=config.hostname,
                clock=reactor,
                timeouts=timeouts,
                connect_timeout=delivery.connect_timeout,
                tls_mode=tls_mode,
                tls_hostname=tls_hostname,
            )
        )

    scheduler = Scheduler(
        queue,
        reactor,
        route=route,
        connect=connect,
        prepare=Signer(keys, reactor).prepare,
        dsn=dsn_builder(config.hostname, reactor.seconds),
        policy=RetryPolicy(schedule=delivery.retry, max_age=delivery.max_age),
        limits=DeliveryLimits(
            concurrency=delivery.concurrency,
            per_destination=delivery.per_destination,
            messages_per_connection=delivery.messages_per_connection,
        ),
        rng=rng,
        observer=observer,
    )
    return DeliveryService(scheduler, config.shutdown.grace_period)
