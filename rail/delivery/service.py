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
from rail.delivery.decide import RetryPolicy
from rail.delivery.mtasts import STSPolicies
from rail.delivery.preparing import Preparer
from rail.delivery.resolve import make_resolver
from rail.delivery.scheduler import DeliveryLimits, IAttemptObserver, Scheduler
from rail.delivery.signing import Signer
from rail.delivery.threads import SigningThreads
from rail.delivery.tlsreport import DISCARD, TLSOutcomeSink
from rail.delivery.transport import build_transport
from rail.dkim.keys import KeyStore
from rail.forward.clients import forwarding_domain
from rail.store.model import BounceReport, DeliveryJob, IDeliveryQueue

__all__ = ["DeliveryService", "build_delivery"]


class DeliveryService(Service):
    """Runs the scheduler (and the signing threads, if given) between start and stop."""

    def __init__(
        self,
        scheduler: Scheduler,
        grace: float,
        threads: SigningThreads | None = None,
        policies: STSPolicies | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.policies = policies
        self._grace = grace
        self._threads = threads
        self.setName("delivery")

    def startService(self) -> None:
        super().startService()
        if self._threads is not None:
            self._threads.start()
        if self.policies is not None:
            self.policies.start()
        self.scheduler.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        stopped = self.scheduler.stop(self._grace)
        threads = self._threads
        if threads is not None:
            stopped.addCallback(lambda _: threads.stop())
        policies = self.policies
        if policies is not None:
            stopped.addCallback(lambda _: policies.stop())
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
    outcomes: TLSOutcomeSink = DISCARD,
) -> DeliveryService:
    """The ``delivery`` service for ``config``; ``sandboxed(client)`` says whose mail is
    signed and recorded but not sent (:mod:`rail.delivery.sandbox`); with ``return_paths``,
    mail goes out with its signed return path (``bounces.enabled``) instead of the app's
    address; ``dsn_recipient`` chooses where a DSN goes (see
    :func:`rail.delivery.bounces.dsn_builder`); ``outcomes`` hears every TLS outcome."""
    delivery = config.delivery
    rng = rng or random.SystemRandom()
    resolver = make_resolver(delivery.nameservers, reactor)
    transport = build_transport(config, reactor, resolver, rng, outcomes)

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
        route=transport.route,
        connect=transport.connector(reactor, config.hostname, delivery.connect_timeout),
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
    return DeliveryService(
        scheduler, config.shutdown.grace_period, threads, policies=transport.policies
    )


def signed_return_path(return_paths: ReturnPaths) -> Callable[[DeliveryJob], str]:
    """The MAIL FROM of a job when ``bounces.enabled``: its signed return path, except
    for forwarded mail, whose SRS sender takes its bounces back to the original sender
    (:mod:`rail.forward`)."""

    def mail_from(job: DeliveryJob) -> str:
        if forwarding_domain(job.client) is not None:
            return job.sender
        return return_paths.address(job.message_id, job.sender)

    return mail_from
