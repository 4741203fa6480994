"""The header section cap over real sockets: SMTPS (mTLS) on the submission listener,
plain SMTP on the inbound listener and the HTTPS API, in the service tree exactly as
``twistd rail`` builds it, with ``limits.header_size: 1KB`` and ``header_fields: 10``.

Clients are Python's ``socket`` and ``ssl`` in a thread; the bytes asserted are the
replies on the wire."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from rail.service import build_service
from rail.shared.registry import registry_source
from tests.integration.fixtures import make_config, storage_overrides
from tests.integration.tlsclient import https_request

_OVER_SIZE = b"From: <app@rail.test>\r\nX-Pad: x" + b"\r\n y" * 300 + b"\r\n\r\nbody\r\n"
_OVER_FIELDS = b"From: <app@rail.test>\r\n" + b"X-N: n\r\n" * 10 + b"\r\nbody\r\n"
_WITHIN = b"From: <app@rail.test>\r\nSubject: fine\r\n\r\nbody\r\n"


def smtp_session(port: int, context: ssl.SSLContext | None, steps: Sequence[bytes]) -> list[bytes]:
    """Connect, read the greeting, then send each step and read one reply to it (the last
    line of a multi-line reply). Returns every reply, greeting first."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock: Any = context.wrap_socket(raw, server_hostname="rail.test") if context else raw
    reader = sock.makefile("rb")
    try:
        replies = [_reply(reader)]
        for step in steps:
            sock.sendall(step)
            replies.append(_reply(reader))
        return replies
    finally:
        reader.close()
        sock.close()


def _reply(reader: Any) -> bytes:
    while True:
        line = reader.readline()
        if not line or line[3:4] != b"-":
            return bytes(line.rstrip(b"\r\n"))


def transaction(sender: str, recipient: str, message: bytes) -> list[bytes]:
    return [
        f"MAIL FROM:<{sender}>\r\n".encode(),
        f"RCPT TO:<{recipient}>\r\n".encode(),
        b"DATA\r\n",
        message + b".\r\n",
    ]


class HeaderLimitListenerTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        base = Path(self.mktemp()).absolute()
        base.mkdir(parents=True)
        data = base / "data"
        listen = {
            "https": "tcp:0:interface=127.0.0.1",
            "submission": "tcp:0:interface=127.0.0.1",
            "inbound": "tcp:0:interface=127.0.0.1",
            "http": None,
            "dns": None,
        }
        self.config = make_config(
            data,
            **storage_overrides(self),
            listen=listen,
            limits={"header_size": "1KB", "header_fields": 10},
            delivery={"hold": True},
        )
        request = ClientRequest(
            name="app",
            emails=("app@rail.test",),
            webhook="https://app.example/hook",
            key_type="ed25519",
            validity=timedelta(days=30),
        )
        issue_client(
            self.config, request, base, datetime.now(UTC), source=registry_source(self.config)
        )
        self.ca_file = data / "ca" / "ca.crt"
        self.pair = (base / "app.crt", base / "app.key")
        self.service = build_service(self.config, reactor)
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def port(self, name: str) -> int:
        port: int = self.service.getServiceNamed(name).port.getHost().port
        return port

    def mtls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.pair[0]), str(self.pair[1]))
        return context

    @inlineCallbacks
    def test_submission(self) -> Any:
        """On SMTPS: over the size, then over the field count, each answered
        ``552 5.3.4`` after DATA; the same session then queues a message within both."""
        steps = [b"EHLO app.example\r\n"]
        for message in (_OVER_SIZE, _OVER_FIELDS, _WITHIN):
            steps += transaction("app@rail.test", "to@dest.example", message)
        replies = yield deferToThread(smtp_session, self.port("submission"), self.mtls(), steps)
        self.assertEqual(replies[5], b"552 5.3.4 Message header section too large")
        self.assertEqual(replies[9], b"552 5.3.4 Message header has too many fields")
        self.assertTrue(replies[13].startswith(b"250 2.0.0 Ok: queued as "), replies[13])

    @inlineCallbacks
    def test_inbound(self) -> Any:
        """On the inbound listener (port 25's): ``552 5.3.4`` after DATA for both limits,
        and the session goes on (RSET is answered)."""
        steps = [b"EHLO mail.sender.example\r\n"]
        steps += transaction("a@sender.example", "app@rail.test", _OVER_SIZE)
        steps += transaction("a@sender.example", "app@rail.test", _OVER_FIELDS)
        steps.append(b"RSET\r\n")
        replies = yield deferToThread(smtp_session, self.port("inbound"), None, steps)
        self.assertEqual(replies[4][:3], b"354", replies)
        self.assertEqual(replies[5], b"552 5.3.4 Message header section too large")
        self.assertEqual(replies[9], b"552 5.3.4 Message header has too many fields")
        self.assertEqual(replies[10][:3], b"250")

    @inlineCallbacks
    def test_api(self) -> Any:
        """On the HTTPS API: a Subject over header_size is 413 HEADER_TOO_LARGE."""
        body = json.dumps(
            {
                "from": "app@rail.test",
                "to": ["b@example.org"],
                "subject": "s" * 2000,
                "body_text": "b",
            }
        ).encode()
        response = yield deferToThread(
            https_request,
            self.port("https"),
            "POST",
            "/api/v1/send",
            self.ca_file,
            cert=self.pair,
            body=body,
            extra_headers={"Content-Type": "application/json"},
        )
        self.assertEqual(response.status, 413)
        self.assertEqual(json.loads(response.body)["error"]["code"], "HEADER_TOO_LARGE")
