"""Wiring of webhook delivery: the safe HTTP client, the signing key, DSNs, the dispatcher
of inbound mail and the dispatcher of events (sharing the client and ``webhooks.*``), run
as the ``webhooks`` service.

The integrator adds it to the root service after the store (so it stops before the store
closes), giving running POSTs ``shutdown.grace_period`` seconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from rail.config import Config
from rail.delivery.bounces import dsn_builder
from rail.webhooks.client import WebhookClient, system_resolver, webhook_trust
from rail.webhooks.dispatcher import Dispatcher, IWebhookObserver, WebhookLimits
from rail.webhooks.eventdispatch import EventDispatcher, IEventObserver
from rail.webhooks.key import WebhookKey
from rail.webhooks.outcome import WebhookPolicy

__all__ = ["WebhooksService", "build_webhooks", "webhook_limits", "webhook_policy"]

_log = Logger()


class WebhooksService(Service):
    """Runs the dispatchers between start and stop."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        grace: float,
        client: WebhookClient | None = None,
        events: EventDispatcher | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.events = events
        self._grace = grace
        self._client = client
        cast(Any, self).setName("webhooks")  # Twisted's Service is untyped (mypy --strict)

    def startService(self) -> None:
        cast(Any, super()).startService()
        self.dispatcher.start()
        if self.events is not None:
            self.events.start()

    def reconfigure(self, policy: WebhookPolicy, limits: WebhookLimits, timeout: float) -> None:
        """New ``webhooks.*`` settings for both dispatchers (SIGHUP)."""
        self.dispatcher.reconfigure(policy, limits, timeout)
        if self.events is not None:
            self.events.reconfigure(policy, limits, timeout)

    def stopService(self) -> Deferred[Any]:
        cast(Any, super()).stopService()
        stopping = [self.dispatcher.stop(self._grace)]
        if self.events is not None:
            stopping.append(self.events.stop(self._grace))
        stopped: Deferred[Any] = DeferredList(stopping)
        client = self._client
        if client is not None:
            stopped.addCallback(lambda _: client.close())
        return stopped


def webhook_policy(config: Config) -> WebhookPolicy:
    return WebhookPolicy(schedule=config.webhooks.retry, max_age=config.webhooks.max_age)


def webhook_limits(config: Config) -> WebhookLimits:
    return WebhookLimits(per_url=config.webhooks.concurrency)


def build_webhooks(
    config: Config,
    reactor: Any,
    store: Any,
    key: WebhookKey,
    observer: IWebhookObserver | None = None,
    rng: random.Random | None = None,
    webhook_url: Callable[[str], str | None] | None = None,
    event_observer: IEventObserver | None = None,
) -> WebhooksService:
    """The ``webhooks`` service for ``config``; ``store`` is the IInboundStore and ``key``
    comes from :func:`rail.webhooks.key.load_or_create_key` (``config.data_dir``). With
    ``webhook_url`` (a client's certificate webhook, or None) it also delivers events:
    ``store`` is then an IEventStore too."""
    webhooks = config.webhooks
    if webhooks.allow_http_loopback and not webhooks.allow_private:
        _log.warn(
            "webhooks.allow_http_loopback has no effect while webhooks.allow_private is"
            " false: no webhook reaches a loopback address"
        )
    client = WebhookClient(
        reactor,
        resolve=system_resolver(reactor),
        allow_private=webhooks.allow_private,
        allow_http_loopback=webhooks.allow_http_loopback,
        trust=webhook_trust(webhooks.ca_file),
        connect_timeout=webhooks.timeout,
        persistent=True,
        per_host=webhooks.concurrency,
    )
    dispatcher = Dispatcher(
        store,
        reactor,
        post=client.post,
        key=key,
        dsn=dsn_builder(config.hostname, reactor.seconds, reactor.callFromThread),
        policy=webhook_policy(config),
        limits=webhook_limits(config),
        timeout=webhooks.timeout,
        rng=rng or random.SystemRandom(),
        observer=observer,
    )
    events = None
    if webhook_url is not None:
        events = EventDispatcher(
            store,
            reactor,
            post=client.post,
            key=key,
            policy=webhook_policy(config),
            limits=webhook_limits(config),
            timeout=webhooks.timeout,
            rng=rng or random.SystemRandom(),
            webhook_url=webhook_url,
            observer=event_observer,
        )
    return WebhooksService(dispatcher, config.shutdown.grace_period, client, events)
