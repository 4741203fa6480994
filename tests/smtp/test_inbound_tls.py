"""Port 25 STARTTLS over a real socket and a real TLS handshake (Python's ssl module as
the client): nothing learnt or pipelined before TLS survives it (RFC 3207 §4.2)."""

from __future__ import annotations

import socket
import ssl
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet import reactor as _reactor
from twisted.internet import threads
from twisted.trial.unittest import TestCase

from rail.config.schema import Inbound
from rail.pki.tls import ServerMaterial, ServerTLS
from rail.smtp.factory import SMTPServerFactory
from rail.smtp.inbound import InboundSession
from rail.testing import MemoryStore
from tests.pki.helpers import issue_server, make_ca
from tests.smtp.helpers import LIMITS
from tests.smtp.test_inbound import BODY, TABLE, FakeVerifier

reactor: Any = _reactor


class _Client:
    """A blocking SMTP client that reads replies a byte at a time, so nothing sent after
    a reply is buffered on the wrong side of the TLS switch."""

    def __init__(self, port: int, ca_pem: bytes) -> None:
        self.sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.ca_pem = ca_pem
        self.greeting = self.reply()

    def line(self) -> bytes:
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError(f"closed after {data!r}")
            data += chunk
        return data[:-2]

    def reply(self) -> list[bytes]:
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return lines

    def command(self, data: bytes) -> bytes:
        self.sock.sendall(data)
        return self.reply()[-1]

    def starttls(self) -> None:
        context = ssl.create_default_context(cadata=self.ca_pem.decode("ascii"))
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")

    def quit(self) -> None:
        self.command(b"QUIT\r\n")
        while self.sock.recv(1024):
            pass
        self.sock.close()


class _TLSServerTestCase(TestCase):
    """A port-25 listener on 127.0.0.1 with STARTTLS (no client certificates)."""

    settings = Inbound()

    def setUp(self) -> None:
        now = datetime.now(UTC)
        ca = make_ca(now=now)
        certificate, key = issue_server(ca, now=now)
        self.ca_pem = ca.certificate.public_bytes(Encoding.PEM)
        tls = ServerTLS(ServerMaterial(chain=(certificate, ca.certificate), key=key), None)
        self.store = MemoryStore(reactor)
        self.verifier = FakeVerifier()

        def new_session() -> InboundSession:
            return InboundSession(
                store=self.store,
                verifier=self.verifier,
                recipients=lambda: TABLE,
                settings=self.settings,
                clock=reactor,
                hostname="mx.rail.test",
            )

        factory = SMTPServerFactory(
            new_session,
            hostname="mx.rail.test",
            limits=LIMITS,
            clock=reactor,
            starttls=tls,
        )
        self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.port_number = self.port.getHost().port

    def client(self) -> _Client:
        return _Client(self.port_number, self.ca_pem)

    def deliver(self, client: _Client) -> bytes:
        client.command(b"MAIL FROM:<good@sender.example>\r\n")
        client.command(b"RCPT TO:<hello@rail.test>\r\n")
        client.command(b"DATA\r\n")
        return client.command(BODY + b".\r\n")


class StartTLSTests(_TLSServerTestCase):
    def test_pipelined_mail_after_starttls_discarded(self) -> None:
        """``STARTTLS\\r\\nMAIL FROM:<evil@x>`` in one packet: the MAIL is discarded;
        inside TLS the client must EHLO again and send its own MAIL."""

        def talk() -> dict[str, Any]:
            client = self.client()
            seen: dict[str, Any] = {"ehlo": client.command(b"EHLO client.example\r\n")}
            seen["starttls"] = client.command(b"STARTTLS\r\nMAIL FROM:<evil@x.example>\r\n")
            client.starttls()
            seen["mail_before_ehlo"] = client.command(b"MAIL FROM:<good@sender.example>\r\n")
            client.sock.sendall(b"EHLO client.example\r\n")
            seen["extensions"] = client.reply()
            seen["rcpt"] = client.command(b"RCPT TO:<hello@rail.test>\r\n")
            seen["data"] = self.deliver(client)
            client.quit()
            return seen

        def check(seen: dict[str, Any]) -> None:
            self.assertEqual(seen["starttls"], b"220 2.0.0 Ready to start TLS")
            self.assertEqual(seen["mail_before_ehlo"], b"503 5.5.1 Send EHLO or HELO first")
            self.assertNotIn(b"250-STARTTLS", seen["extensions"])
            self.assertNotIn(b"250 STARTTLS", seen["extensions"])
            self.assertEqual(seen["rcpt"], b"503 5.5.1 Send MAIL first")
            self.assertTrue(seen["data"].startswith(b"250 2.0.0 Ok: queued as "))
            [message] = self.store.inbound.values()
            self.assertEqual(message.sender, "good@sender.example")
            self.assertTrue(message.tls)
            self.assertIn(b" with ESMTPS id ", message.data)
            self.assertIn(b"(using TLSv1.", message.data)
            self.assertEqual([call[2] for call in self.verifier.calls], ["good@sender.example"])

        return threads.deferToThread(talk).addCallback(check)

    def test_mail_before_starttls_forgotten(self) -> None:
        """A transaction begun before STARTTLS does not exist after it."""

        def talk() -> dict[str, Any]:
            client = self.client()
            client.command(b"EHLO client.example\r\n")
            seen = {"mail": client.command(b"MAIL FROM:<pre-tls@sender.example>\r\n")}
            seen["starttls"] = client.command(b"STARTTLS\r\n")
            client.starttls()
            client.command(b"EHLO client.example\r\n")
            seen["rcpt"] = client.command(b"RCPT TO:<hello@rail.test>\r\n")
            seen["data"] = client.command(b"DATA\r\n")
            client.quit()
            return seen

        def check(seen: dict[str, bytes]) -> None:
            self.assertEqual(seen["mail"], b"250 2.1.0 Sender ok")
            self.assertEqual(seen["starttls"], b"220 2.0.0 Ready to start TLS")
            self.assertEqual(seen["rcpt"], b"503 5.5.1 Send MAIL first")
            self.assertEqual(seen["data"], b"503 5.5.1 Send MAIL first")
            self.assertEqual(self.store.inbound, {})

        return threads.deferToThread(talk).addCallback(check)


class RequireTLSTests(_TLSServerTestCase):
    settings = Inbound(require_tls=True)

    def test_require_tls(self) -> None:
        """require_tls: MAIL in clear gets 530 5.7.0; after STARTTLS mail is accepted."""

        def talk() -> dict[str, bytes]:
            client = self.client()
            client.command(b"EHLO client.example\r\n")
            seen = {"clear": client.command(b"MAIL FROM:<good@sender.example>\r\n")}
            client.command(b"STARTTLS\r\n")
            client.starttls()
            client.command(b"EHLO client.example\r\n")
            seen["data"] = self.deliver(client)
            client.quit()
            return seen

        def check(seen: dict[str, bytes]) -> None:
            self.assertEqual(seen["clear"], b"530 5.7.0 Must issue a STARTTLS command first")
            self.assertTrue(seen["data"].startswith(b"250 2.0.0 Ok: queued as "))

        return threads.deferToThread(talk).addCallback(check)
