"""Outbound delivery faults end to end: the real scheduler, SMTP client, DKIM signer and
DSN builder against real receivers on loopback (Postfix's smtp-sink, Rail's own server).

The scheduler is wired as :func:`rail.delivery.service.build_delivery` wires it, except
that the queue (a :class:`MemoryStore`) and the scheduler run on a :class:`Clock`, while
the real reactor carries the sockets and the client's own timeouts. Retry times are
therefore exact (jitter factor 1) and retries happen only when the test advances the
Clock; waiting for a socket conversation to end polls the store on the real reactor,
bounded.

Each MX host name is served on a port of its own (``ports``): production connects every
host on the configured port, and a test that needs that uses one port for every name.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from OpenSSL import crypto
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, maybeDeferred, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock, deferLater
from twisted.names import dns
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from rail.delivery.bounces import dsn_builder
from rail.delivery.client import ClientTimeouts
from rail.delivery.connect import open_session
from rail.delivery.decide import RetryPolicy
from rail.delivery.preparing import inline
from rail.delivery.resolve import Route, RouteHost, make_resolver, resolve_route
from rail.delivery.scheduler import DeliveryLimits, Scheduler, Session
from rail.delivery.signing import Signer
from rail.dkim.keys import KeyStore
from rail.pki.ca import create_ca
from rail.pki.issue import issue_server_certificate
from rail.pki.keys import generate_private_key
from rail.smtp.server import RailESMTP, SMTPLimits
from rail.store.model import DeliveryJob, JobResult, NewMessage, RecipientStatus
from rail.testing import MemoryStore
from tests.smtp.helpers import ScriptedSession
from tests.support.dnsserver import start_dns
from tests.support.smtpsink import SMTPSink, start_smtp_sink

_T0 = 1_800_000_000.0
_WAIT = 10.0
"""Seconds of real time a socket conversation may take before the test fails."""

_POLICY = RetryPolicy(schedule=(60.0, 300.0), max_age=3600.0)
_TIMEOUTS = ClientTimeouts(
    greeting=10, mail=10, rcpt=10, data_init=10, data_block=10, data_end=10, other=10
)
_SERVER_LIMITS = SMTPLimits(
    message_size=1_000_000,
    max_recipients=10,
    idle_timeout=10,
    transaction_timeout=10,
    bad_commands=5,
)

_HOSTNAME = "rail.test"
_SENDER = "app@sender.example"
_RECIPIENT = "a@dest.example"
_MX = "mx.dest.example"
_SENDER_MX = "mx.sender.example"
_450 = "450 4.3.0 Error: command failed"
"""smtp-sink's soft rejection (``-r``)."""
_DATA = (
    b"From: App <app@sender.example>\r\n"
    b"To: <a@dest.example>\r\n"
    b"Subject: fault test\r\n"
    b"Message-ID: <fault@sender.example>\r\n"
    b"\r\n"
    b".leading dot\r\n"
    b"body\r\n"
)


class _MidRandom(random.Random):
    """Jitter factor exactly 1: retry times are the schedule's."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


class _Observer:
    """Records what the scheduler reports, as the stats observer would see it."""

    def __init__(self) -> None:
        self.attempts: list[JobResult] = []
        self.connections: list[tuple[str, bool]] = []

    def attempt(self, job: DeliveryJob, result: JobResult, seconds: float) -> None:
        self.attempts.append(result)

    def connection(self, domain: str, tls: bool) -> None:
        self.connections.append((domain, tls))


class _TrackedESMTP(RailESMTP):
    """Fires ``gone`` once its connection is closed."""

    gone: Deferred[None]
    factory: Any

    def connectionLost(self, reason: Failure | None = None) -> None:
        super().connectionLost(reason)  # type: ignore[arg-type]
        self.gone.callback(None)


class _HeldESMTP(_TrackedESMTP):
    """Sends its greeting only once ``factory.release`` fires (if still connected)."""

    def connectionMade(self) -> None:
        self.factory.held.append(self)
        self.factory.release.addCallback(self._released)

    def _released(self, _: object) -> None:
        if not self.gone.called:
            super().connectionMade()


class _RailServers(Factory):
    """Rail's own SMTP server, with ``starttls`` offered; counts connections. With
    ``hold``, each connection waits for ``release`` before greeting."""

    def __init__(self, starttls: Any = None, hold: bool = False) -> None:
        self.session = ScriptedSession()
        self.starttls = starttls
        self.hold = hold
        self.held: list[Protocol] = []
        self.release: Deferred[None] = Deferred()
        self.connections = 0
        self.gone: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Protocol:
        self.connections += 1
        protocol = (_HeldESMTP if self.hold else _TrackedESMTP)(
            self.session,
            hostname="mx.dest.example",
            limits=_SERVER_LIMITS,
            clock=reactor,
            starttls=self.starttls,
        )
        protocol.factory = self
        protocol.gone = Deferred()
        self.gone.append(protocol.gone)
        return protocol


def _handshake_always_fails() -> CertificateOptions:
    """A server TLS context that demands a client certificate, which Rail's opportunistic
    client never sends: every handshake fails."""
    now = datetime.now(UTC)
    ca = create_ca("Delivery fault CA", now, "ecdsa-p256")
    key = generate_private_key("ecdsa-p256")
    cert = issue_server_certificate(ca, _MX, ("127.0.0.1",), key.public_key(), now)
    private: Any = key
    certificate: Any = cert
    return CertificateOptions(
        privateKey=private,
        certificate=certificate,
        verify=True,
        caCerts=[crypto.X509.from_cryptography(ca.certificate)],
        requireCertificate=True,
    )


def _unfolded(data: bytes) -> bytes:
    return data.replace(b"\r\n ", b" ")


class _Harness(TestCase):
    """Builds the scheduler, receivers and messages; the tests are in subclasses."""

    timeout = 60

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(_T0)
        self.store = MemoryStore(self.clock)
        self.observer = _Observer()
        self.keys = KeyStore.open(Path(self.mktemp()).resolve() / "dkim")
        self.ports: dict[str, int] = {}
        """The port each MX host name listens on (what ``connect`` dials)."""
        self.connects: list[tuple[str, str]] = []
        """Every ``connect(address, host)`` the scheduler made, in order."""
        self.route: Callable[[str], Deferred[Route]] = self._fixed_route

    def _fixed_route(self, domain: str) -> Deferred[Route]:
        """Every domain has one MX, ``mx.<domain>``, at 127.0.0.1."""
        return succeed(Route((RouteHost(f"mx.{domain}", ("127.0.0.1",)),)))

    def _connect(self, address: str, host: str, tls: object = None) -> Deferred[Session]:
        self.connects.append((address, host))
        return Deferred.fromCoroutine(
            open_session(
                reactor,
                address,
                self.ports[host],
                helo_name=_HOSTNAME,
                clock=reactor,
                timeouts=_TIMEOUTS,
                connect_timeout=5,
            )
        )

    def scheduler(self) -> Scheduler:
        """A started scheduler wired as build_delivery does; stopped at cleanup if the
        test has not stopped it."""
        scheduler = Scheduler(
            self.store,
            self.clock,
            route=lambda domain: self.route(domain),
            connect=self._connect,
            prepare=inline(Signer(self.keys, self.clock).prepare),
            dsn=dsn_builder(_HOSTNAME, self.clock.seconds),
            policy=_POLICY,
            limits=DeliveryLimits(),
            rng=_MidRandom(),
            observer=self.observer,
        )

        def stop() -> Deferred[None]:
            stopped = scheduler.stop(0)
            self.clock.advance(0)  # the grace period runs on the Clock
            return stopped

        self.addCleanup(stop)
        scheduler.start()
        return scheduler

    async def finish(self, scheduler: Scheduler) -> None:
        """Stop as the service does; nothing stays scheduled on the Clock."""
        await scheduler.stop(30)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(scheduler.in_flight, 0)

    async def sink(self, *options: str, dump: bool = False) -> SMTPSink:
        dump_dir = Path(self.mktemp()).resolve() if dump else None
        if dump_dir is not None:
            dump_dir.mkdir(parents=True)
        sink = await start_smtp_sink(reactor, *options, dump_dir=dump_dir)
        self.addCleanup(lambda: ensureDeferred(sink.stop()))
        return sink

    async def rail_server(self, servers: _RailServers) -> int:
        factory: Any = servers
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")

        async def stop() -> None:
            await maybeDeferred(port.stopListening)
            await DeferredList(servers.gone)

        self.addCleanup(lambda: ensureDeferred(stop()))
        address: Any = port.getHost()
        return int(address.port)

    def accept(self) -> str:
        message_id = f"M{len(self.store.messages):03d}"
        self.successResultOf(
            self.store.accept(
                NewMessage(
                    id=message_id,
                    client="app",
                    sender=_SENDER,
                    recipients=(_RECIPIENT,),
                    data=_DATA,
                    channel="api",
                    received_at=self.clock.seconds(),
                )
            )
        )
        return message_id

    def rows(self, message_id: str) -> Sequence[RecipientStatus]:
        status = self.successResultOf(self.store.status("app", message_id))
        assert status is not None
        return status.recipients

    def state(self, message_id: str) -> list[tuple[str, str | None, int, float | None]]:
        return [
            (r.status, r.last_reply, r.attempts, r.next_attempt_at) for r in self.rows(message_id)
        ]

    async def attempted(self, message_id: str, attempts: int) -> None:
        """Wait (real time, at most ``_WAIT`` s) until every recipient of ``message_id``
        has had ``attempts`` attempts recorded."""
        deadline = reactor.seconds() + _WAIT
        while any(r.attempts < attempts for r in self.rows(message_id)):
            if reactor.seconds() > deadline:
                self.fail(
                    f"{message_id}: no attempt {attempts} in {_WAIT}s: {self.rows(message_id)}"
                )
            await deferLater(reactor, 0.01)

    def advance(self, seconds: float) -> int:
        """Advance the scheduler's Clock; return how many connections it opened."""
        before = len(self.connects)
        self.clock.advance(seconds)
        return len(self.connects) - before

    def assert_delivered(self, sink: SMTPSink, sender: str, recipient: str) -> bytes:
        """The sink took exactly one message, with this envelope, DKIM-signed; returns
        the message as received (LF line ends)."""
        [dump] = sink.dumps()
        self.assertEqual(dump.helo, _HOSTNAME)
        self.assertEqual(dump.mail_args.split()[0], f"<{sender}>")
        self.assertEqual(dump.rcpt_args, (f"<{recipient}>",))
        self.assertTrue(dump.message.startswith(b"DKIM-Signature: "), dump.message[:80])
        return dump.message


class DeliveryFaultTests(_Harness):
    async def test_4xx_at_rcpt_deferred_then_retried(self) -> None:
        """A 4xx to RCPT defers the recipient to exactly accept time + 60 s with the
        remote reply; nothing connects at +59 s; at +60 s a new connection delivers it
        (to a receiver that now accepts) and the recipient is sent after 2 attempts."""
        rejecting = await self.sink("-r", "rcpt")
        accepting = await self.sink(dump=True)
        self.ports[_MX] = rejecting.port
        message_id = self.accept()
        scheduler = self.scheduler()
        await self.attempted(message_id, 1)
        self.assertEqual(self.state(message_id), [("deferred", _450, 1, _T0 + 60)])
        self.assertEqual(self.connects, [("127.0.0.1", _MX)])

        self.ports[_MX] = accepting.port
        self.assertEqual(self.advance(59), 0)
        self.assertEqual(self.state(message_id)[0][0], "deferred")
        self.assertEqual(self.advance(1), 1)
        await self.attempted(message_id, 2)
        self.assertEqual(self.state(message_id), [("sent", "250 2.0.0 Ok", 2, None)])
        message = self.assert_delivered(accepting, _SENDER, _RECIPIENT)
        self.assertTrue(message.endswith(_DATA.replace(b"\r\n", b"\n")))
        await self.finish(scheduler)

    async def test_4xx_at_data_retried_on_schedule(self) -> None:
        """A 4xx to DATA defers to exactly +60 s; the retry at +60 s meets it again and
        defers to exactly +60+300 s; at +359 s nothing connects, at +360 s the third
        attempt is delivered."""
        rejecting = await self.sink("-r", "data")
        accepting = await self.sink(dump=True)
        self.ports[_MX] = rejecting.port
        message_id = self.accept()
        scheduler = self.scheduler()
        await self.attempted(message_id, 1)
        self.assertEqual(self.state(message_id), [("deferred", _450, 1, _T0 + 60)])

        self.assertEqual(self.advance(59), 0)
        self.assertEqual(self.advance(1), 1)
        await self.attempted(message_id, 2)
        self.assertEqual(self.state(message_id), [("deferred", _450, 2, _T0 + 360)])

        self.ports[_MX] = accepting.port
        self.assertEqual(self.advance(299), 0)
        self.assertEqual(self.advance(1), 1)
        await self.attempted(message_id, 3)
        self.assertEqual(self.state(message_id), [("sent", "250 2.0.0 Ok", 3, None)])
        self.assert_delivered(accepting, _SENDER, _RECIPIENT)
        await self.finish(scheduler)

    async def test_5xx_at_rcpt_bounces_with_one_dsn(self) -> None:
        """A 5xx to RCPT bounces the recipient at once with the remote reply; exactly one
        DSN is queued, from the null reverse-path to the original sender, naming the
        address, the remote MTA and the reply; and that DSN is delivered with MAIL FROM:<>."""
        rejecting = await self.sink("-f", "rcpt")
        sender_mx = await self.sink(dump=True)
        self.ports[_MX] = rejecting.port
        self.ports[_SENDER_MX] = sender_mx.port
        message_id = self.accept()
        scheduler = self.scheduler()
        await self.attempted(message_id, 1)
        reply = "500 5.3.0 Error: command failed"
        self.assertEqual(self.state(message_id), [("bounced", reply, 1, None)])

        dsns = [m for m in self.store.messages.values() if m.sender == ""]
        self.assertEqual(len(dsns), 1)
        [dsn] = dsns
        self.assertEqual(dsn.recipients, (_SENDER,))
        report = _unfolded(dsn.data)
        self.assertIn(b"Final-Recipient: rfc822; " + _RECIPIENT.encode(), report)
        self.assertIn(b"Remote-MTA: dns; " + _MX.encode(), report)
        self.assertIn(b"Diagnostic-Code: smtp; " + reply.encode(), report)
        self.assertIn(b"Status: 5.3.0", report)

        await self.attempted(dsn.id, 1)
        self.assertEqual(self.state(dsn.id), [("sent", "250 2.0.0 Ok", 1, None)])
        message = self.assert_delivered(sender_mx, "", _SENDER)
        self.assertTrue(message.endswith(dsn.data.replace(b"\r\n", b"\n")))
        self.assertEqual(self.connects, [("127.0.0.1", _MX), ("127.0.0.1", _SENDER_MX)])
        self.assertEqual(len([m for m in self.store.messages.values() if m.sender == ""]), 1)
        await self.finish(scheduler)

    async def test_disconnect_after_final_dot_deferred_and_retried(self) -> None:
        """A receiver that hangs up after the final dot without a reply: the outcome is
        unknown, so the recipient is deferred (local 451 4.4.2, exactly +60 s), never
        bounced, and the retry delivers it."""
        hanging = await self.sink("-q", ".")
        accepting = await self.sink(dump=True)
        self.ports[_MX] = hanging.port
        message_id = self.accept()
        scheduler = self.scheduler()
        await self.attempted(message_id, 1)
        lost = "451 4.4.2 connection lost waiting for the reply to the end of data"
        self.assertEqual(self.state(message_id), [("deferred", lost, 1, _T0 + 60)])
        self.assertIsNone(self.observer.attempts[0].updates[0].remote_mta)

        self.ports[_MX] = accepting.port
        self.assertEqual(self.advance(59), 0)
        self.assertEqual(self.advance(1), 1)
        await self.attempted(message_id, 2)
        self.assertEqual(self.state(message_id), [("sent", "250 2.0.0 Ok", 2, None)])
        self.assert_delivered(accepting, _SENDER, _RECIPIENT)
        await self.finish(scheduler)

    async def test_failed_tls_handshake_delivered_in_plaintext(self) -> None:
        """A receiver offers STARTTLS but every handshake fails: the message is delivered
        in the same attempt on a second, plaintext connection, byte for byte as signed;
        the connection is reported without TLS."""
        servers = _RailServers(starttls=_handshake_always_fails())
        port = await self.rail_server(servers)
        self.ports[_MX] = port
        message_id = self.accept()
        scheduler = self.scheduler()
        await self.attempted(message_id, 1)
        self.assertEqual(self.state(message_id), [("sent", "250 2.0.0 Ok: queued as X", 1, None)])
        self.assertEqual(servers.connections, 2)
        self.assertEqual(servers.session.handshakes, 0)
        self.assertEqual(self.connects, [("127.0.0.1", _MX)])
        self.assertEqual(self.observer.connections, [("dest.example", False)])
        [(envelope, data)] = servers.session.delivered
        self.assertFalse(envelope.tls)
        self.assertEqual((envelope.sender, envelope.recipients), (_SENDER, (_RECIPIENT,)))
        self.assertTrue(data.startswith(b"DKIM-Signature: "))
        self.assertTrue(data.endswith(_DATA))
        self.assertEqual(self.observer.attempts[0].updates[0].remote_mta, _MX)
        await self.finish(scheduler)

    async def test_refused_first_mx_delivered_via_second(self) -> None:
        """Routing through real DNS: MX 10 has an address where nothing listens (connection
        refused), so the same attempt goes on to MX 20 on the same port; sent on the
        first attempt, with MX 20 as the remote MTA."""
        sink = await self.sink(dump=True)
        server = await start_dns(
            reactor,
            {
                "dest.example": [
                    dns.Record_MX(10, b"mx1.dest.example", ttl=60),
                    dns.Record_MX(20, b"mx2.dest.example", ttl=60),
                ],
                "mx1.dest.example": [dns.Record_A("127.0.0.2", ttl=60)],
                "mx2.dest.example": [dns.Record_A("127.0.0.1", ttl=60)],
            },
        )
        self.addCleanup(lambda: ensureDeferred(server.stop()))
        resolver = make_resolver(server.nameservers, reactor)
        rng = _MidRandom()
        self.route = lambda domain: resolve_route(resolver, domain, rng)
        # As in production, every host is dialled on the one configured port.
        self.ports.update({"mx1.dest.example": sink.port, "mx2.dest.example": sink.port})
        message_id = self.accept()
        scheduler = self.scheduler()
        await self.attempted(message_id, 1)
        self.assertEqual(self.state(message_id), [("sent", "250 2.0.0 Ok", 1, None)])
        self.assertEqual(
            self.connects, [("127.0.0.2", "mx1.dest.example"), ("127.0.0.1", "mx2.dest.example")]
        )
        self.assertEqual(self.observer.attempts[0].updates[0].remote_mta, "mx2.dest.example")
        self.assert_delivered(sink, _SENDER, _RECIPIENT)
        await self.finish(scheduler)


class StopDuringSetUpTests(_Harness):
    """Stopping while a connection is being set up, as the module docstring of
    :mod:`rail.delivery.scheduler` promises ("no new claims or transactions ... jobs left
    untouched in the queue")."""

    async def test_stop_while_routing_leaves_the_job_untouched(self) -> None:
        """A job whose route is still being looked up when stop() is called is left as it
        was in the queue: no attempt is recorded, no connection is made."""
        held: Deferred[Route] = Deferred()
        self.route = lambda domain: held
        message_id = self.accept()
        scheduler = self.scheduler()
        stopped = scheduler.stop(5)
        held.callback(Route((RouteHost(_MX, ("127.0.0.1",)),)))
        await stopped
        self.assertEqual(self.connects, [])
        self.assertEqual(self.observer.attempts, [])
        self.assertEqual(self.state(message_id), [("queued", None, 0, _T0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    async def test_stop_while_connecting_starts_no_transaction(self) -> None:
        """A connection still being set up when stop() is called carries no transaction,
        even if the server greets after the grace period has run out; stop() fires, and
        the job stays untouched in the queue."""
        servers = _RailServers(hold=True)
        self.ports[_MX] = await self.rail_server(servers)
        message_id = self.accept()
        scheduler = self.scheduler()
        deadline = reactor.seconds() + _WAIT
        while not servers.held:
            if reactor.seconds() > deadline:
                self.fail(f"no connection within {_WAIT}s")
            await deferLater(reactor, 0.01)
        stopped = scheduler.stop(5)
        self.clock.advance(5)  # the grace period is over: every connection is cut
        servers.release.callback(None)
        await stopped
        self.assertEqual(servers.session.delivered, [])
        self.assertEqual(self.state(message_id), [("queued", None, 0, _T0)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
