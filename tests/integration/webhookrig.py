"""What the tests of inbound webhooks through a whole Rail set up alike: a twisted.web
receiver on loopback that records the POSTs, a DNS server with no records (every
inbound check finds nothing), and a configuration whose inbound listener POSTs to that
receiver over plain HTTP, delivery held."""

from __future__ import annotations

from pathlib import Path

import attrs
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web import server

from rail.config import Config
from tests.integration.fixtures import make_config, storage_overrides
from tests.interop.test_inbound import _Receiver
from tests.support.dnsserver import start_dns


@attrs.frozen
class WebhookRig:
    receiver: _Receiver
    hook: str
    """The receiver's URL, for a client certificate's webhook."""
    base: Path
    config: Config


async def webhook_rig(testcase: TestCase) -> WebhookRig:
    """Everything started, stopped when ``testcase`` ends; the storage follows
    ``RAIL_TEST_BACKEND`` (:func:`tests.integration.fixtures.storage_overrides`)."""
    receiver = _Receiver()
    site = server.Site(receiver)
    site.noisy = False
    listening = reactor.listenTCP(0, site, interface="127.0.0.1")
    testcase.addCleanup(listening.stopListening)
    dns = await start_dns(reactor, {})
    testcase.addCleanup(dns.stop)
    base = Path(testcase.mktemp()).absolute()
    base.mkdir(parents=True)
    config = make_config(
        base / "data",
        **storage_overrides(testcase),
        listen={
            "https": "tcp:0:interface=127.0.0.1",
            "submission": None,
            "inbound": "tcp:0:interface=127.0.0.1",
            "http": None,
            "dns": None,
        },
        inbound={"nameservers": [f"127.0.0.1:{dns.port}"]},
        webhooks={"allow_http_loopback": True, "allow_private": True},
        delivery={"hold": True},
    )
    hook = f"http://127.0.0.1:{listening.getHost().port}/hook"
    return WebhookRig(receiver, hook, base, config)
