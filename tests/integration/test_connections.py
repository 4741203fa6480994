"""Connection bounds over real sockets and real TLS, on the service tree ``twistd rail`` runs.

Clients are blocking sockets in threads; each waits for an event (a reply, a close), never
for a length of time. Deadlines are set to their minimum (1 s) so the tests stay short.
"""

from __future__ import annotations

import socket
import ssl
import struct
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from rail.service import build_service
from tests.integration.fixtures import make_config, rail_ca, storage_overrides
from tests.integration.tlsclient import https_request

_LOCAL = "127.0.0.1"
_OTHER = "127.0.0.2"  # another loopback source address: another client as far as caps go


def _connect(port: int, source: str = _LOCAL) -> socket.socket:
    return socket.create_connection((_LOCAL, port), timeout=10, source_address=(source, 0))


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as a close)."""
    chunks = []
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def _line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def _reply(sock: socket.socket) -> bytes:
    """One SMTP reply, all its lines."""
    lines = [_line(sock)]
    while lines[-1][3:4] == b"-":
        lines.append(_line(sock))
    return b"".join(lines)


class ConnectionBoundsTests(TestCase):
    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir(parents=True)
        data = base / "data"
        rail_ca(data)
        self.ca_file = data / "ca" / "ca.crt"
        listen = "tcp:0:interface=127.0.0.1"
        config = make_config(
            data,
            **storage_overrides(self),
            listen={
                "https": listen,
                "submission": listen,
                "inbound": listen,
                "http": None,
                "dns": listen,
            },
            inbound={"max_connections_per_ip": 1},
            limits={
                "http_header_timeout": "1s",
                "connections": {
                    "per_ip": {"https": 2, "submission": 2, "dns": 1},
                    "tls_handshake_timeout": "1s",
                },
            },
        )
        self.refused: list[tuple[str, str]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_format", "").startswith("refused listener="):
                self.refused.append((event["listener"], event["reason"]))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        self.service = build_service(config, reactor)
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def port(self, name: str) -> int:
        service: Any = self.service.getServiceNamed(name)
        if name == "dns":
            port: int = service.port
            return port
        number: int = service.port.getHost().port
        return number

    def test_every_listener_is_gated(self) -> None:
        """Each TCP listener has a gate with the configured per-address bound (port 25's
        from ``inbound.max_connections_per_ip``) and the same derived cap."""
        per_ip = {
            name: self.service.getServiceNamed(name).gate.limits.per_ip  # type: ignore[attr-defined]
            for name in ("https", "submission", "inbound")
        }
        self.assertEqual(per_ip, {"https": 2, "submission": 2, "inbound": 1})
        dns: Any = self.service.getServiceNamed("dns")
        self.assertEqual(dns._tcp_listening.limits.per_ip, 1)
        caps = {
            self.service.getServiceNamed(name).gate.limits.max_connections  # type: ignore[attr-defined]
            for name in ("https", "submission", "inbound")
        }
        self.assertEqual(len(caps), 1)

    @inlineCallbacks
    def test_no_client_hello_is_cut(self) -> Any:
        """On 465 and 443, a connection that never sends a ClientHello is closed at the
        handshake deadline, having received nothing, and the refusal is logged."""
        for name in ("submission", "https"):
            port = self.port(name)

            def silent(port: int = port) -> bytes:
                with _connect(port) as sock:
                    return _read_until_closed(sock)

            received = yield deferToThread(silent)
            self.assertEqual(received, b"")
            self.assertIn((name, "tls_handshake_timeout"), self.refused)

    @inlineCallbacks
    def test_stalled_starttls_is_cut(self) -> Any:
        """On port 25, a client that says STARTTLS and then never starts the handshake is
        closed at the deadline."""
        port = self.port("inbound")

        def stall() -> tuple[bytes, bytes]:
            with _connect(port) as sock:
                _reply(sock)
                sock.sendall(b"EHLO client.example\r\n")
                _reply(sock)
                sock.sendall(b"STARTTLS\r\n")
                go = _reply(sock)
                return go, _read_until_closed(sock)

        go, rest = yield deferToThread(stall)
        self.assertTrue(go.startswith(b"220 "), go)
        self.assertEqual(rest, b"")
        self.assertIn(("inbound", "tls_handshake_timeout"), self.refused)

    @inlineCallbacks
    def test_per_ip_https(self) -> Any:
        """A third connection from one address to 443 is closed before any TLS; a client
        at another address completes TLS and is answered meanwhile."""
        port = self.port("https")

        def crowd() -> tuple[bytes, int]:
            held = [_connect(port), _connect(port)]
            try:
                with _connect(port) as third:
                    refused = _read_until_closed(third)
                response = https_request(port, "GET", "/healthz", self.ca_file, source=_OTHER)
                return refused, response.status
            finally:
                for sock in held:
                    sock.close()

        refused, status = yield deferToThread(crowd)
        self.assertEqual((refused, status), (b"", 200))
        self.assertIn(("https", "per_ip"), self.refused)
        metrics = yield deferToThread(
            https_request, port, "GET", "/metrics", self.ca_file, source=_OTHER
        )
        self.assertIn(b'rail_refusals_total{listener="https",reason="per_ip"} 1.0', metrics.body)

    @inlineCallbacks
    def test_per_ip_smtp_says_421(self) -> Any:
        """Port 25's per-address bound (``inbound.max_connections_per_ip``) answers the
        connection over it with 421 4.7.0; another address is greeted."""
        port = self.port("inbound")

        def crowd() -> tuple[bytes, bytes]:
            with _connect(port) as first:
                _reply(first)
                with _connect(port) as second:
                    refused = _read_until_closed(second)
                with _connect(port, _OTHER) as other:
                    greeting = _reply(other)
            return refused, greeting

        refused, greeting = yield deferToThread(crowd)
        self.assertEqual(refused, b"421 4.7.0 Too many connections from your address\r\n")
        self.assertTrue(greeting.startswith(b"220 rail.test"), greeting)

    @inlineCallbacks
    def test_per_ip_dns_tcp(self) -> Any:
        """DNS over TCP closes a second connection from one address; another address is
        answered."""
        port = self.port("dns")
        query = (
            struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
            + b"\x04rail\x04test\x00\x00\x06\x00\x01"
        )

        def crowd() -> tuple[bytes, bytes]:
            with _connect(port) as first:
                first.sendall(struct.pack("!H", len(query)) + query)
                first.recv(2)
                with _connect(port) as second:
                    refused = _read_until_closed(second)
                with _connect(port, _OTHER) as other:
                    other.sendall(struct.pack("!H", len(query)) + query)
                    (length,) = struct.unpack("!H", other.recv(2))
                    answer = b""
                    while len(answer) < length:
                        answer += other.recv(length - len(answer))
            return refused, answer

        refused, answer = yield deferToThread(crowd)
        self.assertEqual(refused, b"")
        self.assertEqual(answer[:2], b"\x12\x34")
        self.assertIn(("dns", "per_ip"), self.refused)

    @inlineCallbacks
    def test_https_slow_headers_get_408(self) -> Any:
        """Over real TLS, a request whose headers do not complete within the header
        deadline is answered 408 and closed."""
        port = self.port("https")
        context = ssl.create_default_context(cafile=str(self.ca_file))

        def slow() -> bytes:
            with (
                _connect(port) as raw,
                context.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
                try:
                    return _read_until_closed(tls)  # type: ignore[arg-type]
                except ssl.SSLError:
                    return b""

        answer = yield deferToThread(slow)
        self.assertTrue(answer.startswith(b"HTTP/1.1 408 "), answer)
        self.assertIn(b'"REQUEST_TIMEOUT"', answer)
        self.assertIn(("https", "http_header_timeout"), self.refused)
