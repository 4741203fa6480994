"""Wiring of webhook delivery: the safe HTTP client, the signing key, DSNs and the
dispatcher, run as the ``webhooks`` service.

The integrator adds it to the root service after the store (so it stops before the store
closes), giving running POSTs ``shutdown.grace_period`` seconds.
"""

from __future__ import annotations

import random
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from rail.config import Config
from rail.delivery.bounces import dsn_builder
from rail.webhooks.client import WebhookClient, system_resolver, webhook_trust
from rail.webhooks.dispatcher import Dispatcher, IWebhookObserver, WebhookLimits
from rail.webhooks.key import WebhookKey
from rail.webhooks.outcome import WebhookPolicy

__all__ = ["WebhooksService", "build_webhooks", "webhook_limits", "webhook_policy"]

_log = Logger()


class WebhooksService(Service):
    """Runs the dispatcher between start and stop."""

    def __init__(
        self, dispatcher: Dispatcher, grace: float, client: WebhookClient | None = None
    ) -> None:
        self.dispatcher = dispatcher
        self._grace = grace
        self._client = client
        cast(Any, self).setName("webhooks")  # Twisted's Service is untyped (mypy --strict)

    def startService(self) -> None:
        cast(Any, super()).startService()
        self.dispatcher.start()

    def stopService(self) -> Deferred[Any]:
        cast(Any, super()).stopService()
        stopped: Deferred[Any] = self.dispatcher.stop(self._grace)
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
) -> WebhooksService:
    """The ``webhooks`` service for ``config``; ``store`` is the IInboundStore and ``key``
    comes from :func:`rail.webhooks.key.load_or_create_key` (``config.data_dir``)."""
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
    return WebhooksService(dispatcher, config.shutdown.grace_period, client)
