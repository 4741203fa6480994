"""The outbound client over real loopback sockets: Rail's strict server, Postfix's
smtp-sink, real TLS; and connection failures mapped to SessionError."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import crypto
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.error import ConnectionRefusedError, NoRouteError, TimeoutError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from rail.delivery.client import ClientTimeouts, SMTPClientProtocol
from rail.delivery.connect import open_session
from rail.delivery.outcome import MessageResult, OutboundMessage, SessionError
from rail.delivery.tlspolicy import OPPORTUNISTIC, TLSRequirement
from rail.delivery.tlsverify import TLSContexts
from rail.pki.ca import CertificateAuthority, create_ca
from rail.pki.issue import issue_server_certificate
from rail.pki.keys import generate_private_key
from rail.pki.tls import ServerMaterial, server_options
from rail.policy.verdict import Reject
from rail.smtp.server import RailESMTP, SMTPLimits
from tests.smtp.helpers import ScriptedSession
from tests.support.smtpsink import SMTPSink, start_smtp_sink

TIMEOUTS = ClientTimeouts(
    greeting=5, mail=5, rcpt=5, data_init=5, data_block=5, data_end=5, other=5
)
LIMITS = SMTPLimits(
    message_size=20_000_000,
    max_recipients=10,
    idle_timeout=10,
    transaction_timeout=10,
    bad_commands=5,
)
MESSAGE = OutboundMessage(
    sender="app@rail.test",
    recipients=("a@dest.example", "b@dest.example"),
    data=b"Subject: hi\r\n\r\n.hello\r\n",
)


def must_show_message() -> bytes:
    """6,000 lines that are each ``.``: one at offset 0 and one at 16,384 (Twisted's
    chunk boundary), the rest after them; filler lines between."""
    filler = (b"x" * 78 + b"\r\n") * 204 + b"y" * 59 + b"\r\n"
    data = b".\r\n" + filler + b".\r\n" * 5999
    assert data[16_384:16_387] == b".\r\n" and data.count(b".\r\n") == 6000
    return data


RELAY = TLSRequirement(mode="smarthost-required", verify_names=("mx.rail.test",))


def codes(result: MessageResult) -> list[int]:
    return [r.reply.code for r in result.recipients]


class _TrackedESMTP(RailESMTP):
    def connectionLost(self, reason: Failure | None = None) -> None:
        super().connectionLost(reason)  # type: ignore[arg-type]
        self.gone.callback(None)


class _StartTLSGarbage(Protocol):
    """Offers STARTTLS, says 220 to it, then answers the client's TLS hello with bytes
    that are not TLS."""

    def connectionMade(self) -> None:
        self.transport.write(b"220 broken.example ESMTP\r\n")  # type: ignore[union-attr]
        self.state = "command"

    def dataReceived(self, data: bytes) -> None:
        if self.state == "tls":
            self.transport.write(b"this is not a TLS record\r\n" * 20)  # type: ignore[union-attr]
        elif data.upper().startswith(b"EHLO"):
            self.transport.write(b"250-broken.example\r\n250 STARTTLS\r\n")  # type: ignore[union-attr]
        elif data.upper().startswith(b"STARTTLS"):
            self.transport.write(b"220 go ahead\r\n")  # type: ignore[union-attr]
            self.state = "tls"

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.gone.callback(None)


class _Servers(Factory):
    """RailESMTP on 127.0.0.1 sharing one recording session; ``first`` (if set) builds
    the protocol for the first connection instead. Counts connections, and lets the
    test wait for every server side to close."""

    def __init__(self, tls: Any = None, first: type[Protocol] | None = None) -> None:
        self.session = ScriptedSession()
        self.tls = tls
        self.first = first
        self.connections = 0
        self.gone: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Protocol:
        self.connections += 1
        protocol: Any
        if self.first is not None and self.connections == 1:
            protocol = self.first()
        else:
            protocol = _TrackedESMTP(
                self.session,
                hostname="mx.rail.test",
                limits=LIMITS,
                clock=reactor,
                starttls=self.tls,
            )
        protocol.factory = self
        protocol.gone = Deferred()
        self.gone.append(protocol.gone)
        return protocol  # type: ignore[no-any-return]


def _ca() -> CertificateAuthority:
    return create_ca("Delivery test CA", datetime.now(UTC), "ecdsa-p256")


def _server_material(ca: CertificateAuthority) -> ServerMaterial:
    key = generate_private_key("ecdsa-p256")
    now = datetime.now(UTC)
    cert = issue_server_certificate(ca, "mx.rail.test", ("127.0.0.1",), key.public_key(), now)
    return ServerMaterial(chain=(cert, ca.certificate), key=key)


def _client_certificate_required(ca: CertificateAuthority) -> CertificateOptions:
    """A server context that demands a client certificate, which Rail never sends:
    every handshake with Rail's client fails."""
    material = _server_material(ca)
    key: Any = material.key
    certificate: Any = material.chain[0]
    return CertificateOptions(
        privateKey=key,
        certificate=certificate,
        verify=True,
        caCerts=[crypto.X509.from_cryptography(ca.certificate)],
        requireCertificate=True,
    )


class RealSocketTestCase(TestCase):
    timeout = 30

    async def serve(self, servers: _Servers) -> int:
        port = reactor.listenTCP(0, servers, interface="127.0.0.1")

        async def stop() -> None:
            await port.stopListening()
            await DeferredList(servers.gone)

        self.addCleanup(lambda: ensureDeferred(stop()))
        return int(port.getHost().port)

    async def sink(self, *options: str, dump: bool = True) -> SMTPSink:
        dump_dir = Path(self.mktemp()).resolve() if dump else None
        if dump_dir is not None:
            dump_dir.mkdir(parents=True)
        sink = await start_smtp_sink(reactor, *options, dump_dir=dump_dir)
        self.addCleanup(lambda: ensureDeferred(sink.stop()))
        return sink

    async def open(
        self, port: int, requirement: TLSRequirement | None = None, **kwargs: Any
    ) -> SMTPClientProtocol:
        return await open_session(
            reactor,
            "127.0.0.1",
            port,
            helo_name="out.rail.test",
            clock=reactor,
            timeouts=TIMEOUTS,
            connect_timeout=5,
            requirement=requirement,
            **kwargs,
        )

    def contexts(self, ca: CertificateAuthority) -> TLSContexts:
        """Contexts trusting only ``ca`` (written to a PEM file, as ``ca_file`` is)."""
        path = Path(self.mktemp())
        path.write_bytes(ca.certificate.public_bytes(Encoding.PEM))
        return TLSContexts(str(path), system_roots=False)


class RailServerTests(RealSocketTestCase):
    async def test_transactions_on_one_connection(self) -> None:
        """Against Rail's strict server: the stored bytes arrive exactly, the MAIL
        parameters are honoured, a refused recipient has its own reply, and a second
        message uses the same connection."""
        servers = _Servers()
        servers.session.rcpt_verdicts["b@dest.example"] = Reject(550, "5.1.1", "no such user")
        session = await self.open(await self.serve(servers))
        message = attrs.evolve(MESSAGE, data=must_show_message(), eight_bit=True)
        first = await session.send(message)
        second = await session.send(attrs.evolve(MESSAGE, recipients=("c@dest.example",)))
        await session.quit()
        self.assertEqual(codes(first), [250, 550])
        self.assertEqual(first.recipients[1].reply.enhanced, "5.1.1")
        self.assertEqual(codes(second), [250])
        self.assertEqual(servers.connections, 1)
        self.assertEqual(session.messages_sent, 2)
        [(envelope, data), (_, second_data)] = servers.session.delivered
        self.assertEqual(data, message.data)
        self.assertEqual(second_data, MESSAGE.data)
        self.assertEqual(envelope.helo, "out.rail.test")
        self.assertEqual(envelope.declared_size, len(message.data))
        self.assertTrue(envelope.eight_bit)
        self.assertTrue(session.closed)

    async def test_smtputf8(self) -> None:
        """A non-ASCII envelope goes with SMTPUTF8 to a server that offers it."""
        servers = _Servers()
        session = await self.open(await self.serve(servers))
        result = await session.send(attrs.evolve(MESSAGE, recipients=("josé@exemple.fr",)))
        await session.quit()
        self.assertEqual(codes(result), [250])
        [(envelope, _)] = servers.session.delivered
        self.assertEqual(envelope.recipients, ("josé@exemple.fr",))
        self.assertTrue(envelope.smtputf8)

    async def test_opportunistic_tls(self) -> None:
        """STARTTLS is used when offered, with a certificate nobody could verify (RFC
        7435); the session reports TLS and its version (for the delivery log), and the
        server saw the message inside it."""
        servers = _Servers(tls=server_options(_server_material(_ca()), None))
        session = await self.open(await self.serve(servers), OPPORTUNISTIC)
        self.assertTrue(session.tls_active)
        self.assertIn(session.tls_version, ("TLSv1.2", "TLSv1.3"))
        self.assertIn("PIPELINING", session.capabilities)
        self.assertNotIn("STARTTLS", session.capabilities)
        result = await session.send(MESSAGE)
        await session.quit()
        self.assertEqual(codes(result), [250, 250])
        self.assertEqual(servers.session.handshakes, 1)
        self.assertTrue(servers.session.delivered[0][0].tls)
        self.assertEqual(servers.connections, 1)

    async def test_failed_handshake_retried_in_plaintext(self) -> None:
        """When the TLS handshake fails the host is retried in plaintext on a new
        connection; ``tls_active`` says TLS was not used, and there is no TLS version."""
        servers = _Servers(tls=_client_certificate_required(_ca()))
        session = await self.open(await self.serve(servers), OPPORTUNISTIC)
        self.assertFalse(session.tls_active)
        self.assertIsNone(session.tls_version)
        result = await session.send(MESSAGE)
        await session.quit()
        self.assertEqual(codes(result), [250, 250])
        self.assertEqual(servers.connections, 2)
        self.assertFalse(servers.session.delivered[0][0].tls)

    async def test_garbage_after_starttls_retried_in_plaintext(self) -> None:
        """A server that says 220 to STARTTLS and then sends non-TLS bytes is retried in
        plaintext too."""
        servers = _Servers(first=_StartTLSGarbage)
        session = await self.open(await self.serve(servers), OPPORTUNISTIC)
        self.assertFalse(session.tls_active)
        result = await session.send(MESSAGE)
        await session.quit()
        self.assertEqual(codes(result), [250, 250])
        self.assertEqual(servers.connections, 2)

    async def test_required_tls_verified(self) -> None:
        """Required TLS verifies the certificate for the relay's name (here against a
        given CA file) and succeeds when it matches."""
        ca = _ca()
        servers = _Servers(tls=server_options(_server_material(ca), None))
        port = await self.serve(servers)
        session = await self.open(
            port, RELAY, server_name="mx.rail.test", contexts=self.contexts(ca)
        )
        self.assertTrue(session.tls_active)
        await session.quit()

    async def test_required_tls_unverifiable(self) -> None:
        """Required TLS with an untrusted certificate or the wrong name fails as a
        temporary TLS failure, and never falls back to plaintext."""
        ca = _ca()
        servers = _Servers(tls=server_options(_server_material(ca), None))
        port = await self.serve(servers)
        for requirement, contexts in (
            (RELAY, self.contexts(_ca())),
            (
                TLSRequirement(mode="smarthost-required", verify_names=("other.example",)),
                self.contexts(ca),
            ),
        ):
            with self.assertRaises(SessionError) as caught:
                await self.open(port, requirement, server_name="mx.rail.test", contexts=contexts)
            self.assertTrue(caught.exception.tls_failed)
            self.assertEqual(caught.exception.reply.code // 100, 4)
        self.assertEqual(servers.connections, 2)
        self.assertEqual(servers.session.delivered, [])

    async def test_required_tls_not_offered(self) -> None:
        """Required TLS and a server without STARTTLS: local 451 4.7.4."""
        servers = _Servers()
        with self.assertRaises(SessionError) as caught:
            await self.open(await self.serve(servers), RELAY, server_name="mx.rail.test")
        self.assertEqual(caught.exception.reply.enhanced, "4.7.4")
        self.assertFalse(caught.exception.reply.remote)

    async def test_connection_refused(self) -> None:
        """Nothing listening: SessionError with a local 451 4.4.1 naming the refusal."""
        port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        number = port.getHost().port
        await port.stopListening()
        with self.assertRaises(SessionError) as caught:
            await self.open(number)
        reply = caught.exception.reply
        self.assertEqual((reply.code, reply.enhanced, reply.remote), (451, "4.4.1", False))
        self.assertIn(f"connection refused by 127.0.0.1:{number}", reply.text)


class SMTPSinkTests(RealSocketTestCase):
    async def test_dot_stuffing_must_show(self) -> None:
        """6,000 ``.`` lines, one at offset 0 and one at 16,384, reach Postfix's
        smtp-sink as exactly one message with exactly those lines."""
        sink = await self.sink()
        session = await self.open(sink.port)
        message = attrs.evolve(MESSAGE, data=must_show_message())
        result = await session.send(message)
        await session.quit()
        self.assertEqual(codes(result), [250, 250])
        [dump] = sink.dumps()
        self.assertEqual(dump.message, message.data.replace(b"\r\n", b"\n"))
        self.assertEqual(dump.message.split(b"\n").count(b"."), 6000)
        self.assertEqual(dump.helo, "out.rail.test")
        self.assertEqual(dump.mail_args, "<app@rail.test>")
        self.assertEqual(dump.rcpt_args, ("<a@dest.example>", "<b@dest.example>"))

    async def test_large_message_and_reuse(self) -> None:
        """A 3 MB message (sent in chunks as the socket drains) and then small ones on
        the same connection arrive intact; 8BITMIME is declared when offered."""
        sink = await self.sink()
        session = await self.open(sink.port)
        line = b".0123456789" * 7 + b"\r\n"
        big = attrs.evolve(MESSAGE, data=b"Subject: big\r\n\r\n" + line * 40_000, eight_bit=True)
        self.assertEqual(codes(await session.send(big)), [250, 250])
        for _ in range(3):
            self.assertEqual(codes(await session.send(MESSAGE)), [250, 250])
        await session.quit()
        dumps = sink.dumps()
        self.assertEqual(len(dumps), 4)
        [large] = [d for d in dumps if len(d.message) > 1000]
        self.assertEqual(large.message, big.data.replace(b"\r\n", b"\n"))
        self.assertEqual(large.mail_args, "<app@rail.test> BODY=8BITMIME")

    async def test_without_pipelining(self) -> None:
        """A server without PIPELINING gets one command at a time, and the mail."""
        sink = await self.sink("-p")
        session = await self.open(sink.port)
        self.assertNotIn("PIPELINING", session.capabilities)
        self.assertEqual(codes(await session.send(MESSAGE)), [250, 250])
        await session.quit()
        self.assertEqual(len(sink.dumps()), 1)

    async def test_disconnect_after_final_dot(self) -> None:
        """A server that hangs up right after the final dot, without a reply: the
        SessionError says ``after_data`` (reported, so the queue retries it)."""
        sink = await self.sink("-q", ".", dump=False)
        session = await self.open(sink.port)
        with self.assertRaises(SessionError) as caught:
            await session.send(MESSAGE)
        self.assertTrue(caught.exception.after_data)
        self.assertEqual(caught.exception.reply.enhanced, "4.4.2")
        await session.when_closed()
        self.assertTrue(session.closed)

    async def test_rejections(self) -> None:
        """smtp-sink's soft RCPT rejections are per-recipient results."""
        sink = await self.sink("-r", "RCPT", dump=False)
        session = await self.open(sink.port)
        result = await session.send(MESSAGE)
        await session.quit()
        self.assertEqual(codes(result), [450, 450])


class ConnectFailureTests(SynchronousTestCase):
    def attempt(self, host: str = "192.0.2.1") -> tuple[MemoryReactorClock, Deferred[Any]]:
        memory = MemoryReactorClock()
        d = Deferred.fromCoroutine(
            open_session(
                memory,
                host,
                25,
                helo_name="out.rail.test",
                clock=Clock(),
                timeouts=TIMEOUTS,
                connect_timeout=7,
            )
        )
        return memory, d

    def test_connect_errors(self) -> None:
        """A connect timeout, refusal or unreachable network is a local 451 4.4.1
        naming the problem; the connect timeout is the one configured."""
        for failure, text in (
            (TimeoutError(), "no answer from 192.0.2.1:25 within 7s"),
            (ConnectionRefusedError(), "connection refused by 192.0.2.1:25"),
            (NoRouteError(), "cannot connect to 192.0.2.1:25: No route to host."),
        ):
            memory, d = self.attempt()
            [(host, port, factory, timeout, _)] = memory.tcpClients
            self.assertEqual((host, port, timeout), ("192.0.2.1", 25, 7))
            factory.clientConnectionFailed(None, Failure(failure))
            error = self.failureResultOf(d, SessionError).value
            self.assertEqual((error.reply.code, error.reply.enhanced), (451, "4.4.1"))
            self.assertEqual(error.reply.text, text)

    def test_ipv6_literal(self) -> None:
        """An IPv6 literal is connected to as such, and named in brackets."""
        memory, d = self.attempt("2001:db8::25")
        [(host, _, factory, _, _)] = memory.tcpClients
        self.assertEqual(host, "2001:db8::25")
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        error = self.failureResultOf(d, SessionError).value
        self.assertEqual(error.reply.text, "connection refused by [2001:db8::25]:25")
