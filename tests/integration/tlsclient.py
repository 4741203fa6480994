"""A blocking HTTPS client for integration tests, run in a thread.

Python's ``ssl`` module is an independent TLS peer (not Twisted, not pyOpenSSL), which is
what a test of Rail's handshake rules should talk to.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import attrs


@attrs.frozen
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def https_request(
    port: int,
    method: str,
    path: str,
    ca_file: Path,
    cert: tuple[Path, Path] | None = None,
    body: bytes = b"",
    extra_headers: dict[str, str] | None = None,
    tls_version: ssl.TLSVersion | None = None,
    host: str = "127.0.0.1",
    alpn: list[str] | None = None,
    source: str | None = None,
) -> Response:
    """One request on a fresh connection; raises ssl.SSLError if the handshake is refused."""
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    if tls_version is not None:
        context.minimum_version = tls_version
        context.maximum_version = tls_version
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    source_address = (source, 0) if source is not None else None
    with socket.create_connection((host, port), timeout=10, source_address=source_address) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            headers = {"Host": "localhost", "Connection": "close", **(extra_headers or {})}
            if body or method in ("POST", "PUT"):
                headers["Content-Length"] = str(len(body))
            head = f"{method} {path} HTTP/1.1\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in headers.items()
            )
            tls.sendall(head.encode("ascii") + b"\r\n" + body)
            chunks = []
            while True:
                data = tls.recv(65536)
                if not data:
                    break
                chunks.append(data)
    raw_response = b"".join(chunks)
    head_bytes, _, payload = raw_response.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    parsed = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        parsed[key.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding") == "chunked":
        payload = _dechunk(payload)
    return Response(status=status, headers=parsed, body=payload)


def _dechunk(data: bytes) -> bytes:
    out = []
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        data = rest[size + 2 :]
    return b"".join(out)


class PersistentConnection:
    """One TLS connection kept open across calls (each call blocks: run it in a thread),
    so a test can change the server's state between two requests or commands."""

    def __init__(self, port: int, ca_file: Path, cert: tuple[Path, Path]) -> None:
        context = ssl.create_default_context(cafile=str(ca_file))
        context.load_cert_chain(str(cert[0]), str(cert[1]))
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.tls = context.wrap_socket(raw, server_hostname="localhost")
        self._buffer = b""

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            data = self.tls.recv(65536)
            if not data:
                raise ConnectionError(f"closed before {marker!r}: {self._buffer!r}")
            self._buffer += data
        head, _, self._buffer = self._buffer.partition(marker)
        return head + marker

    def _read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            data = self.tls.recv(65536)
            if not data:
                raise ConnectionError(f"closed after {len(self._buffer)} of {size} bytes")
            self._buffer += data
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def smtp_reply(self) -> bytes:
        """The bytes of one (possibly multi-line) SMTP reply."""
        lines = [self._read_until(b"\r\n")]
        while lines[-1][3:4] == b"-":
            lines.append(self._read_until(b"\r\n"))
        return b"".join(lines)

    def smtp(self, line: bytes) -> bytes:
        """Send one command line (CRLF added) and return the reply's bytes."""
        self.tls.sendall(line + b"\r\n")
        return self.smtp_reply()

    def http(self, method: str, path: str, body: bytes = b"", **headers: str) -> Response:
        """One HTTP/1.1 keep-alive request; the answer must have a Content-Length."""
        fields = {"Host": "localhost", "Content-Length": str(len(body)), **headers}
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        self.tls.sendall(head.encode("ascii") + b"\r\n" + body)
        lines = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        parsed = {}
        for line in lines[1:]:
            if line:
                key, _, value = line.partition(":")
                parsed[key.strip().lower()] = value.strip()
        payload = self._read_exactly(int(parsed["content-length"]))
        return Response(status=status, headers=parsed, body=payload)

    def at_eof(self) -> bool:
        """True once the server has closed the connection (and sent nothing more)."""
        return not self._buffer and self.tls.recv(1) == b""

    def close(self) -> None:
        self.tls.close()
