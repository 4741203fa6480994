"""ACME with several nodes: the service's side (:class:`rail.acme.service.AcmeService`
``offer`` and :class:`rail.acme.client.OrderBusy`) and port 80 answering a token another
node's order holds."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rail.acme.challenges import PendingChallenges
from rail.acme.client import OrderBusy
from rail.acme.service import AcmeService
from rail.pki.tls import ServerMaterial
from rail.web.http80 import http80_site
from tests.acme.helpers import DAY, NOW, material
from tests.acme.test_http80 import _KEY_AUTHORIZATION, _TOKEN
from tests.acme.test_service import _NAMES, _RENEW_BEFORE, _Orders


class SharedServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.orders = _Orders()
        self.installed: list[ServerMaterial] = []

    def service(self, current: object = None) -> AcmeService:
        service = AcmeService(
            clock=self.clock,
            obtain=self.orders,
            install=self.installed.append,
            names=_NAMES,
            renew_before=_RENEW_BEFORE,
            current=current,  # type: ignore[arg-type]
            rng=lambda: 0.0,
        )
        service.startService()
        self.addCleanup(self.stopped, service)
        return service

    def stopped(self, service: AcmeService) -> None:
        if service.running:
            service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_busy_is_not_a_failure(self) -> None:
        """While another node orders, the service logs it, counts no failure and checks
        again after the first back-off step."""
        service = self.service()
        self.clock.advance(0)
        with capturedLogs() as events:
            self.orders.pending[0].errback(OrderBusy("another node is ordering"))
        self.assertEqual(service.failures, 0)
        self.assertEqual(service.next_check, NOW + 60.0)
        self.assertEqual([e["log_level"].name for e in events], ["info"])

    def test_offer_installs_and_reschedules(self) -> None:
        """A certificate another node got is installed, becomes current (the next check
        is a day later, not an order) and the same one offered again changes nothing."""
        old = material(_NAMES, not_after=NOW + 40 * DAY, serial=1)
        service = self.service(current=old.chain[0])
        self.clock.advance(0)
        self.assertEqual(self.orders.pending, [])
        new = material(_NAMES, not_after=NOW + 90 * DAY, serial=2)
        done = service.offer(new)
        self.successResultOf(done)
        self.assertEqual(self.installed, [new])
        self.assertEqual(service.next_check, NOW + DAY)
        service.offer(new)
        self.assertEqual(self.installed, [new])


class Port80LookupTests(SynchronousTestCase):
    def test_token_of_another_node(self) -> None:
        """A token this node does not hold is looked up (another node's order) and
        answered once found; one found nowhere is 404; this node's own is answered
        without a look-up."""
        asked: list[str] = []
        answers: dict[str, Deferred[str | None]] = {}

        def lookup(token: str) -> Deferred[str | None]:
            asked.append(token)
            answers[token] = Deferred()
            return answers[token]

        challenges = PendingChallenges()
        clock = Clock()
        site = http80_site("mail.rail.test", challenges, clock=clock, lookup=lookup)

        def get(token: str) -> StringTransport:
            protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4321))
            assert protocol is not None
            transport = StringTransport()
            protocol.makeConnection(transport)
            protocol.dataReceived(
                b"GET /.well-known/acme-challenge/" + token.encode() + b" HTTP/1.1\r\n"
                b"Host: mail.rail.test\r\n\r\n"
            )
            return transport

        found = get(_TOKEN)
        self.assertEqual(asked, [_TOKEN])
        self.assertEqual(found.value(), b"")
        answers[_TOKEN].callback(_KEY_AUTHORIZATION)
        self.assertIn(b" 200 ", found.value().split(b"\r\n")[0])
        self.assertTrue(found.value().endswith(_KEY_AUTHORIZATION.encode()))
        missing = get("nope")
        answers["nope"].callback(None)
        self.assertIn(b" 404 ", missing.value().split(b"\r\n")[0])
        challenges.add("mine", "mine.key")
        own = get("mine")
        self.assertEqual(asked, [_TOKEN, "nope"])
        self.assertTrue(own.value().endswith(b"mine.key"))
