"""Wiring of outbound delivery: resolver, SMTP client, DKIM signer, DSNs and the scheduler.

Builds the :class:`Scheduler` from the configuration and runs it as the ``delivery``
service. It stops before the store closes (the root service stops the store last), giving
running transactions ``shutdown.grace_period`` seconds. DKIM signing runs in threads of
its own (:class:`rail.delivery.threads.SigningThreads`, ``2 * delivery.prepare_threads``
of them, see :mod:`rail.delivery.preparing`), started and stopped with the service.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from rail.bounces.verp import ReturnPaths
from rail.config import Config
from rail.delivery.bounces import dsn_builder
from rail.delivery.client import ClientTimeouts
from rail.delivery.connect import open_session
from rail.delivery.decide import RetryPolicy
from rail.delivery.preparing import Preparer
from rail.delivery.resolve import Route, make_resolver, resolve_route, smarthost_route
from rail.delivery.scheduler import DeliveryLimits, IAttemptObserver, Scheduler, Session
from rail.delivery.signing import Signer
from rail.delivery.threads import SigningThreads
from rail.dkim.keys import KeyStore
from rail.forward.clients import forwarding_domain
from rail.store.model import BounceReport, DeliveryJob, IDeliveryQueue

__all__ = ["DeliveryService", "build_delivery"]


class DeliveryService(Service):
    """Runs the scheduler (and the signing threads, if given) between start and stop."""

    def __init__(
        self, scheduler: Scheduler, grace: float, threads: SigningThreads | None = None
    ) -> None:
        self.scheduler = scheduler
        self._grace = grace
        self._threads = threads
        self.setName("delivery")

    def startService(self) -> None:
        super().startService()
        if self._threads is not None:
            self._threads.start()
        self.scheduler.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        stopped = self.scheduler.stop(self._grace)
        threads = self._threads
        if threads is not None:
            stopped.addCallback(lambda _: threads.stop())
        return stopped


def build_delivery(
    config: Config,
    reactor: Any,
    queue: IDeliveryQueue,
    keys: KeyStore,
    observer: IAttemptObserver,
    rng: random.Random | None = None,
    sandboxed: Callable[[str], bool] | None = None,
    return_paths: ReturnPaths | None = None,
    dsn_recipient: Callable[[BounceReport], str] | None = None,
) -> DeliveryService:
    """The ``delivery`` service for ``config``; ``sandboxed(client)`` says whose mail is
    signed and recorded but not sent (:mod:`rail.delivery.sandbox`); with ``return_paths``,
    mail goes out with its signed return path (``bounces.enabled``) instead of the app's
    address; ``dsn_recipient`` chooses where a DSN goes (see
    :func:`rail.delivery.bounces.dsn_builder`)."""
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

    threads = SigningThreads(reactor, 2 * delivery.prepare_threads)
    preparer = Preparer(
        Signer(keys, reactor, on_reactor=reactor.callFromThread).prepare,
        run_in_thread=threads,
        clock=reactor,
        budget=delivery.prepare_timeout,
        threads=delivery.prepare_threads,
    )
    scheduler = Scheduler(
        queue,
        reactor,
        route=route,
        connect=connect,
        prepare=preparer,
        dsn=dsn_builder(
            config.hostname, reactor.seconds, reactor.callFromThread, recipient=dsn_recipient
        ),
        policy=RetryPolicy(schedule=delivery.retry, max_age=delivery.max_age),
        limits=DeliveryLimits(
            concurrency=delivery.concurrency,
            per_destination=delivery.per_destination,
            messages_per_connection=delivery.messages_per_connection,
        ),
        rng=rng,
        observer=observer,
        sandboxed=sandboxed,
        return_path=None if return_paths is None else signed_return_path(return_paths),
    )
    return DeliveryService(scheduler, config.shutdown.grace_period, threads)


def signed_return_path(return_paths: ReturnPaths) -> Callable[[DeliveryJob], str]:
    """The MAIL FROM of a job when ``bounces.enabled``: its signed return path, except
    for forwarded mail, whose SRS sender takes its bounces back to the original sender
    (:mod:`rail.forward`)."""

    def mail_from(job: DeliveryJob) -> str:
        if forwarding_domain(job.client) is not None:
            return job.sender
        return return_paths.address(job.message_id, job.sender)

    return mail_from
