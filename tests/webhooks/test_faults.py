"""Webhook faults end to end: the real dispatcher, signing and HTTP client (Twisted's Agent
with the pinned-address endpoint) against a real twisted.web receiver on 127.0.0.1.

As in tests/integration/test_delivery_faults.py, the spool (a :class:`MemoryStore`) and
the dispatcher run on a :class:`Clock`, while the real reactor carries the sockets.
Retry times are therefore exact (jitter factor 1) and retries, and the dispatcher's
timeout, happen only when the test advances the Clock; waiting for a socket conversation
polls the store on the real reactor, bounded.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from rail.delivery.bounces import dsn_builder
from rail.inbound.model import InboundStatus
from rail.pki.ca import create_ca
from rail.pki.files import certificate_pem
from rail.pki.issue import issue_server_certificate
from rail.pki.keys import generate_private_key
from rail.store.schema import database_path
from rail.store.sqlite import SQLiteStore
from rail.testing import MemoryStore
from rail.webhooks.client import WebhookClient, webhook_trust
from rail.webhooks.dispatcher import Dispatcher, WebhookLimits
from rail.webhooks.key import WebhookKey
from rail.webhooks.outcome import WebhookPolicy
from rail.webhooks.signing import verify
from tests.webhooks.helpers import T0, MidRandom, inbound

_WAIT = 10.0
"""Seconds of real time a socket conversation may take before the test fails."""
_POLICY = WebhookPolicy(schedule=(30.0, 60.0), max_age=3600.0)
_TIMEOUT = 30.0
_HOSTNAME = "rail.test"

Answer = tuple[int, dict[str, str]] | str
"""``(code, headers)``, or ``"hang"``: never answer."""


class _Receiver(Resource):
    """Answers POSTs from ``script`` in turn (the last answer repeats), recording each
    request's headers and body."""

    isLeaf = True

    def __init__(self, script: list[Answer]) -> None:
        super().__init__()
        self.script = script
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.hanging: list[Request] = []

    def render_POST(self, request: Request) -> Any:
        headers = {
            name.decode().lower(): values[0].decode()
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        assert request.content is not None
        self.requests.append((headers, request.content.read()))
        answer = self.script[min(len(self.requests), len(self.script)) - 1]
        if answer == "hang":
            self.hanging.append(request)
            return NOT_DONE_YET
        assert not isinstance(answer, str)
        code, extra = answer
        request.setResponseCode(code)
        for name, value in extra.items():
            request.setHeader(name, value)
        return b"answer body\n"


class _Harness(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.store: Any = MemoryStore(self.clock)
        self.key = WebhookKey(ed25519.Ed25519PrivateKey.generate())
        self.names: dict[str, list[str]] = {}
        self.resolved: list[str] = []
        self.allow_private = True
        self.trust: Any = None

    def resolve(self, host: str) -> Deferred[list[str]]:
        self.resolved.append(host)
        return succeed(self.names.get(host, []))

    def receiver(self, script: list[Answer], tls: CertificateOptions | None = None) -> int:
        resource = _Receiver(script)
        self.resource = resource
        site = Site(resource)
        factory: Any = site
        if tls is None:
            port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        else:
            port = reactor.listenSSL(0, factory, tls, interface="127.0.0.1")

        def stop() -> Deferred[Any]:
            for request in resource.hanging:
                if request.channel is not None and request.channel.transport is not None:
                    request.channel.transport.abortConnection()
            return maybeDeferred(port.stopListening).addCallback(
                lambda _: deferLater(reactor, 0.05)
            )

        self.addCleanup(stop)
        return int(port.getHost().port)

    def dispatcher(self, store: Any = None) -> Dispatcher:
        self.client = WebhookClient(
            reactor,
            resolve=self.resolve,
            allow_private=self.allow_private,
            allow_http_loopback=True,
            trust=self.trust,
            connect_timeout=5,
        )
        dispatcher = Dispatcher(
            store or self.store,
            self.clock,
            post=self.client.post,
            key=self.key,
            dsn=dsn_builder(_HOSTNAME, self.clock.seconds),
            policy=_POLICY,
            limits=WebhookLimits(),
            timeout=_TIMEOUT,
            rng=MidRandom(),
        )

        def stop() -> Deferred[None]:
            stopped = dispatcher.stop(0)
            self.clock.advance(0)
            return stopped

        self.addCleanup(stop)
        dispatcher.start()
        return dispatcher

    def spool(self, url: str, message_id: str = "01KMT1GZ0000000000000000AB", **kw: Any) -> str:
        self.successResultOf(self.store.accept_inbound(inbound(message_id, url, **kw)))
        return message_id

    def status(self, message_id: str, store: Any = None) -> InboundStatus:
        answer = (store or self.store).inbound_status("myapp", message_id)
        status: InboundStatus | None = self.successResultOf(answer)
        assert status is not None
        return status

    def state(self, message_id: str) -> tuple[str, str | None, int, float | None]:
        s = self.status(message_id)
        return (s.status, s.last_reply, s.attempts, s.next_attempt_at)

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = reactor.seconds() + _WAIT
        while not condition():
            if reactor.seconds() > deadline:
                self.fail(f"not within {_WAIT}s: {what}")
            await deferLater(reactor, 0.01)

    async def attempted(self, message_id: str, attempts: int) -> None:
        await self.until(
            lambda: self.status(message_id).attempts >= attempts,
            f"{message_id}: attempt {attempts}",
        )

    def advance(self, seconds: float) -> int:
        """Advance the dispatcher's Clock; return how many requests reached the receiver
        synchronously (a POST on a real socket arrives later: use ``until``)."""
        self.clock.advance(seconds)
        return len(self.resource.requests)

    async def finish(self, dispatcher: Dispatcher) -> None:
        await dispatcher.stop(30)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(dispatcher.in_flight, 0)

    def dsns(self) -> list[Any]:
        return [m for m in self.store.messages.values() if m.sender == ""]


class FaultTests(_Harness):
    async def test_500_then_200_delivered_once_on_schedule(self) -> None:
        """A 500 defers to exactly +30 s; nothing is sent at +29 s; at +30 s the retry
        is delivered. Both POSTs carry the same webhook-id, each its own timestamp, and
        each verifies with the public key."""
        port = self.receiver([(500, {}), (200, {})])
        url = f"http://127.0.0.1:{port}/hook"
        message_id = self.spool(url)
        dispatcher = self.dispatcher()
        await self.attempted(message_id, 1)
        self.assertEqual(
            self.state(message_id),
            ("deferred", "HTTP 500 Internal Server Error", 1, T0 + 30),
        )
        self.advance(29)
        await deferLater(reactor, 0.1)
        self.assertEqual(len(self.resource.requests), 1)
        self.advance(1)
        await self.attempted(message_id, 2)
        self.assertEqual(self.state(message_id), ("delivered", "HTTP 200 OK", 2, None))
        self.assertEqual(len(self.resource.requests), 2)
        (first, body1), (second, body2) = self.resource.requests
        self.assertEqual(first["webhook-id"], second["webhook-id"])
        self.assertEqual(first["webhook-id"], f"msg_{message_id}_myapp")
        self.assertEqual(
            (first["webhook-timestamp"], second["webhook-timestamp"]),
            (str(int(T0)), str(int(T0 + 30))),
        )
        self.assertEqual(first["content-type"], "application/json")
        verify(self.key.public_text, first, body1, now=T0)
        verify(self.key.public_text, second, body2, now=T0 + 30)
        self.assertEqual(json.loads(body2)["message_id"], message_id)
        self.assertEqual(self.dsns(), [])
        await self.finish(dispatcher)

    async def test_404_fails_with_one_dsn(self) -> None:
        """A 404 fails the job at once, is not retried, and queues exactly one DSN from
        the null sender to the original sender."""
        port = self.receiver([(404, {})])
        message_id = self.spool(f"http://127.0.0.1:{port}/hook")
        dispatcher = self.dispatcher()
        await self.attempted(message_id, 1)
        self.assertEqual(self.state(message_id), ("failed", "HTTP 404 Not Found", 1, None))
        [dsn] = self.dsns()
        self.assertEqual(dsn.recipients, ("bob@example.net",))
        self.assertIn(b"HTTP 404 Not Found", dsn.data)
        self.advance(3600)
        await deferLater(reactor, 0.1)
        self.assertEqual(len(self.resource.requests), 1)
        await self.finish(dispatcher)

    async def test_404_no_dsn_when_bounces_not_allowed(self) -> None:
        """A job whose message must not bounce (forged-looking sender) fails without
        a DSN."""
        port = self.receiver([(404, {})])
        message_id = self.spool(f"http://127.0.0.1:{port}/hook", bounce_allowed=False)
        dispatcher = self.dispatcher()
        await self.attempted(message_id, 1)
        self.assertEqual(self.status(message_id).status, "failed")
        self.assertEqual(self.dsns(), [])
        await self.finish(dispatcher)

    async def test_429_retry_after_honoured(self) -> None:
        """A 429 with Retry-After: 120 is retried at exactly +120 s, not on the
        schedule's +30 s."""
        port = self.receiver([(429, {"Retry-After": "120"}), (200, {})])
        message_id = self.spool(f"http://127.0.0.1:{port}/hook")
        dispatcher = self.dispatcher()
        await self.attempted(message_id, 1)
        self.assertEqual(
            self.state(message_id), ("deferred", "HTTP 429 Too Many Requests", 1, T0 + 120)
        )
        self.advance(119)
        await deferLater(reactor, 0.1)
        self.assertEqual(len(self.resource.requests), 1)
        self.advance(1)
        await self.attempted(message_id, 2)
        self.assertEqual(self.status(message_id).status, "delivered")
        await self.finish(dispatcher)

    async def test_no_answer_times_out_then_retried(self) -> None:
        """A receiver that takes the request and never answers: after the timeout (on
        the dispatcher's Clock) the POST is cancelled and deferred to +30 s after it;
        the retry is delivered."""
        port = self.receiver(["hang", (200, {})])
        message_id = self.spool(f"http://127.0.0.1:{port}/hook")
        dispatcher = self.dispatcher()
        await self.until(lambda: len(self.resource.requests) == 1, "first POST")
        self.assertEqual(self.status(message_id).attempts, 0)
        self.advance(_TIMEOUT)
        await self.attempted(message_id, 1)
        self.assertEqual(
            self.state(message_id),
            ("deferred", "timeout after 30s", 1, T0 + _TIMEOUT + 30),
        )
        self.advance(30)
        await self.attempted(message_id, 2)
        self.assertEqual(self.state(message_id), ("delivered", "HTTP 200 OK", 2, None))
        await self.finish(dispatcher)

    async def test_redirect_not_followed(self) -> None:
        """A 302 is not followed (the Location is never requested) and fails the job."""
        port = self.receiver([(302, {"Location": "http://127.0.0.1:1/elsewhere"})])
        message_id = self.spool(f"http://127.0.0.1:{port}/hook")
        dispatcher = self.dispatcher()
        await self.attempted(message_id, 1)
        self.assertEqual(
            self.state(message_id), ("failed", "redirect not followed (HTTP 302 Found)", 1, None)
        )
        self.assertEqual(self.client.connections, [("127.0.0.1", port)])
        await self.finish(dispatcher)

    async def test_private_address_refused_without_connecting(self) -> None:
        """With allow_private off, a host resolving to 10.0.0.5 is refused: the job
        fails, no connection is attempted."""
        self.allow_private = False
        self.names["hook.example"] = ["10.0.0.5"]
        message_id = self.spool("https://hook.example/mail")
        dispatcher = self.dispatcher()
        await self.attempted(message_id, 1)
        self.assertEqual(
            self.state(message_id),
            ("failed", "address not allowed: 10.0.0.5 is private", 1, None),
        )
        self.assertEqual(self.resolved, ["hook.example"])
        self.assertEqual(self.client.connections, [])
        await self.finish(dispatcher)

    async def test_http_loopback_refused_when_private_off(self) -> None:
        """allow_http_loopback is on but allow_private is off: an http:// webhook to a
        listening loopback port fails without a connection being made."""
        self.allow_private = False
        port = self.receiver([(200, {})])
        message_id = self.spool(f"http://127.0.0.1:{port}/hook")
        dispatcher = self.dispatcher()
        await self.attempted(message_id, 1)
        self.assertEqual(
            self.state(message_id),
            (
                "failed",
                "address not allowed: 127.0.0.1 is loopback (webhooks.allow_private is false)",
                1,
                None,
            ),
        )
        self.assertEqual(self.client.connections, [])
        self.assertEqual(self.resource.requests, [])
        await self.finish(dispatcher)

    async def test_connection_refused_retried(self) -> None:
        """Nothing listening: connection refused (naming the address), deferred on the
        schedule."""
        listening = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
        port = int(listening.getHost().port)
        await maybeDeferred(listening.stopListening)
        message_id = self.spool(f"http://127.0.0.1:{port}/hook")
        dispatcher = self.dispatcher()
        await self.attempted(message_id, 1)
        self.assertEqual(
            self.state(message_id),
            ("deferred", f"connection refused (127.0.0.1:{port})", 1, T0 + 30),
        )
        await self.finish(dispatcher)

    async def test_stop_leaves_in_flight_untouched(self) -> None:
        """Stopping while a POST hangs: after the grace period the POST is cancelled
        and its job stays queued with no attempt recorded."""
        port = self.receiver(["hang"])
        message_id = self.spool(f"http://127.0.0.1:{port}/hook")
        dispatcher = self.dispatcher()
        await self.until(lambda: len(self.resource.requests) == 1, "first POST")
        stopped = dispatcher.stop(5)
        self.clock.advance(5)
        await stopped
        self.assertEqual(self.state(message_id), ("queued", None, 0, T0))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(dispatcher.in_flight, 0)


def _tls_material(directory: Path, hostname: str) -> tuple[Path, CertificateOptions]:
    now = datetime.now(UTC)
    ca = create_ca("Webhook test CA", now, "ecdsa-p256")
    key = generate_private_key("ecdsa-p256")
    cert = issue_server_certificate(ca, hostname, (), key.public_key(), now)
    directory.mkdir(parents=True)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(certificate_pem(ca.certificate))
    private: Any = key
    certificate: Any = cert
    return ca_file, CertificateOptions(privateKey=private, certificate=certificate)


class HTTPSTests(_Harness):
    async def test_https_with_ca_file(self) -> None:
        """https to a receiver whose certificate comes from the ca_file CA, verified
        against the URL's host name (the pinned address is 127.0.0.1): delivered."""
        ca_file, options = _tls_material(Path(self.mktemp()), "hook.test")
        port = self.receiver([(200, {})], tls=options)
        self.names["hook.test"] = ["127.0.0.1"]
        self.trust = webhook_trust(ca_file)
        message_id = self.spool(f"https://hook.test:{port}/hook")
        dispatcher = self.dispatcher()
        await self.attempted(message_id, 1)
        self.assertEqual(self.state(message_id), ("delivered", "HTTP 200 OK", 1, None))
        self.assertEqual(self.resource.requests[0][0]["host"], f"hook.test:{port}")
        await self.finish(dispatcher)

    async def test_https_wrong_name_retried(self) -> None:
        """The same receiver reached as other.test: the certificate does not match the
        name, nothing is POSTed, and the job is deferred as a TLS failure."""
        ca_file, options = _tls_material(Path(self.mktemp()), "hook.test")
        port = self.receiver([(200, {})], tls=options)
        self.names["other.test"] = ["127.0.0.1"]
        self.trust = webhook_trust(ca_file)
        message_id = self.spool(f"https://other.test:{port}/hook")
        dispatcher = self.dispatcher()
        await self.attempted(message_id, 1)
        status, reply, _, when = self.state(message_id)
        self.assertEqual((status, when), ("deferred", T0 + 30))
        assert reply is not None
        self.assertEqual(
            reply, f"TLS failure (127.0.0.1:{port}): certificate does not match other.test"
        )
        self.assertEqual(self.resource.requests, [])
        await self.finish(dispatcher)


class RestartTests(_Harness):
    async def test_retries_resume_after_restart(self) -> None:
        """SQLite spool: a 503 defers the job; a new store and dispatcher over the same
        directory (a restart) retry it on schedule and deliver it."""
        directory = Path(self.mktemp()).resolve()
        port = self.receiver([(503, {}), (200, {})])
        store = SQLiteStore.open(directory, reactor, max_queued=100, min_free_bytes=0)
        store.start()
        message_id = "01KMT1GZ0000000000000000AB"
        await store.accept_inbound(inbound(message_id, f"http://127.0.0.1:{port}/hook"))
        dispatcher = self.dispatcher(store)

        async def attempts(which: Any) -> int:
            status = await which.inbound_status("myapp", message_id)
            return int(status.attempts)

        deadline = reactor.seconds() + _WAIT
        while await attempts(store) < 1:
            self.assertLess(reactor.seconds(), deadline)
            await deferLater(reactor, 0.01)
        await dispatcher.stop(0)
        await store.close()

        again = SQLiteStore.open(directory, reactor, max_queued=100, min_free_bytes=0)
        again.start()
        self.addCleanup(again.close)
        status = await again.inbound_status("myapp", message_id)
        self.assertEqual(
            (status.status, status.last_reply, status.next_attempt_at),
            ("deferred", "HTTP 503 Service Unavailable", T0 + 30),
        )
        self.clock.advance(30)  # restarted when the retry is due
        dispatcher = self.dispatcher(again)
        deadline = reactor.seconds() + _WAIT
        while await attempts(again) < 2:
            self.assertLess(reactor.seconds(), deadline)
            await deferLater(reactor, 0.01)
        status = await again.inbound_status("myapp", message_id)
        self.assertEqual((status.status, status.attempts), ("delivered", 2))
        await self.finish(dispatcher)


class CorruptRowTests(_Harness):
    async def test_corrupt_inbound_row_quarantined_others_posted(self) -> None:
        """SQLite spool of 20 messages, one truncated on disk while Rail is down: after
        the restart the 19 others are POSTed, the damaged one is ``failed`` with the
        reason (no POST, no DSN), and a further restart keeps it so."""
        directory = Path(self.mktemp()).resolve()
        port = self.receiver([(200, {})])
        url = f"http://127.0.0.1:{port}/hook"
        store = SQLiteStore.open(directory, reactor, max_queued=100, min_free_bytes=0)
        store.start()
        ids = [f"01KMT1GZ00000000000000{n:04d}" for n in range(20)]
        for message_id in ids:
            await store.accept_inbound(inbound(message_id, url))
        await store.close()
        bad = ids[7]
        connection = sqlite3.connect(database_path(directory))
        connection.execute("UPDATE inbound SET data = substr(data, 1, 10) WHERE id = ?", (bad,))
        connection.commit()
        connection.close()

        store = SQLiteStore.open(directory, reactor, max_queued=100, min_free_bytes=0)
        store.start()
        reported: list[Any] = []
        store.observe_quarantined(reported.append)
        dispatcher = self.dispatcher(store)

        async def delivered() -> int:
            return int((await store.webhook_counts())["delivered"])

        deadline = reactor.seconds() + _WAIT
        while await delivered() < 19:
            self.assertLess(reactor.seconds(), deadline)
            await deferLater(reactor, 0.01)
        await self.finish(dispatcher)
        posted = {json.loads(body)["message_id"] for _, body in self.resource.requests}
        self.assertEqual(posted, set(ids) - {bad})
        reason = f"stored data is truncated (10 of {len(inbound(bad, url).data)} bytes)"
        status = await store.inbound_status("myapp", bad)
        self.assertEqual((status.status, status.last_reply), ("failed", "quarantined: " + reason))
        self.assertEqual([(r.message_id, r.kind) for r in reported], [(bad, "corrupt")])
        self.assertEqual(
            await store.recipient_counts(),
            dict.fromkeys(("queued", "deferred", "sent", "bounced", "failed", "deleted"), 0),
        )  # no DSN queued
        await store.close()

        again = SQLiteStore.open(directory, reactor, max_queued=100, min_free_bytes=0)
        again.start()
        self.addCleanup(again.close)
        self.assertEqual(await again.claim_webhooks(T0 + 1e6, 100, frozenset()), [])
        self.assertEqual((await again.inbound_status("myapp", bad)).status, "failed")
