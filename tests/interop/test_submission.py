"""Submission to a real ``twistd rail`` by independent peers: smtplib, swaks and curl.

Each test starts Rail from a fresh ``rail init --dev`` directory, talks to it over loopback
with a client that shares no code with Twisted, and reads the queue back with
:mod:`rail.store.inspect`.
"""

from __future__ import annotations

import json
import re
import shutil
import smtplib
import socket
import ssl
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.integration.processes import run
from tests.interop.helpers import SENDER, RunningRail, message_bytes, start_rail
from tests.support.tools import need_tool

_CURL = shutil.which("curl")
_RECIPIENT = "someone@example.com"


def _queued_id(reply: bytes) -> str:
    """The id in ``2.0.0 Ok: queued as <ID>``."""
    text = reply.decode("ascii")
    assert text.startswith("2.0.0 Ok: queued as "), text
    return text.rsplit(" ", 1)[1]


def _http_response(output: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body from ``curl -i`` output."""
    head, _, body = output.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


class SMTPSubmissionTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:
        self.rail: RunningRail = yield start_rail(self)

    @inlineCallbacks
    def test_smtplib_with_client_certificate(self) -> Any:
        """smtplib over implicit TLS with the app certificate gets 250 2.0.0 with a queue
        id; the queued message has the body, the envelope, and a Received header naming
        the authenticated client."""
        message = message_bytes("interop", "Hello from smtplib.")

        def send() -> tuple[int, bytes]:
            with self.rail.smtp() as smtp:
                smtp.ehlo("client.example")
                smtp.mail(SENDER)
                smtp.rcpt(_RECIPIENT)
                return smtp.data(message)

        code, reply = yield deferToThread(send)
        self.assertEqual(code, 250, reply)
        stored = self.rail.message(_queued_id(reply))
        assert stored is not None
        self.assertEqual((stored.sender, stored.recipients), (SENDER, (_RECIPIENT,)))
        self.assertEqual((stored.client, stored.channel), ("app", "smtp"))
        self.assertTrue(stored.data.startswith(b"Received: from client.example"), stored.data)
        header, _, body = stored.data.partition(b"\r\n\r\n")
        self.assertIn(b"(authenticated client app)", header)
        self.assertIn(b"Subject: interop\r\n", header)
        self.assertEqual(body, b"Hello from smtplib.\r\n")

    @inlineCallbacks
    def test_smtplib_without_client_certificate(self) -> Any:
        """Without a client certificate the TLS connection is refused before any SMTP
        greeting, and nothing is queued."""

        def connect() -> None:
            with self.rail.smtp(client_certificate=False) as smtp:
                smtp.sendmail(SENDER, [_RECIPIENT], message_bytes("no cert", "x"))

        failure = yield self.assertFailure(
            deferToThread(connect),
            ssl.SSLError,
            smtplib.SMTPServerDisconnected,
            ConnectionError,
        )
        if not isinstance(failure, ConnectionResetError):
            self.assertIn("CERTIFICATE_REQUIRED", str(failure))
        self.assertEqual(self.rail.stored(), [])

    @inlineCallbacks
    def test_smtplib_unauthorized_mail_from(self) -> Any:
        """MAIL FROM an address the certificate does not allow is refused with
        550 5.7.1, and nothing is queued."""

        def send() -> None:
            with self.rail.smtp() as smtp:
                message = message_bytes("wrong sender", "x", sender="other@rail.test")
                smtp.sendmail("other@rail.test", [_RECIPIENT], message)

        failure = yield self.assertFailure(deferToThread(send), smtplib.SMTPSenderRefused)
        self.assertEqual(failure.smtp_code, 550)
        self.assertTrue(failure.smtp_error.startswith(b"5.7.1 "), failure.smtp_error)
        self.assertEqual(self.rail.stored(), [])

    @inlineCallbacks
    def test_too_many_errors_closes_tls_session(self) -> Any:
        """After 421 4.7.0 (too many errors, pipelined) the server really closes the TLS
        connection: the client reads end-of-file, not silence."""

        def session() -> bytes:
            raw = socket.create_connection(("127.0.0.1", self.rail.smtps_port), timeout=10)
            with self.rail.smtp_context().wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"EHLO interop.test\r\n")
                bad = b"MAIL FROM:<other@rail.test>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n"
                for _ in range(4):
                    tls.sendall(bad)
                received = b""
                while chunk := tls.recv(4096):  # raises TimeoutError if never closed
                    received += chunk
                return received

        received = yield deferToThread(session)
        self.assertTrue(received.endswith(b"421 4.7.0 Too many errors; closing connection\r\n"))

    @inlineCallbacks
    def test_smtplib_unauthorized_from_header(self) -> Any:
        """An authorized MAIL FROM with a From header naming another address is refused
        after DATA with 550 5.7.1, and nothing is queued."""

        def send() -> None:
            with self.rail.smtp() as smtp:
                message = message_bytes("wrong From", "x", sender="other@rail.test")
                smtp.sendmail(SENDER, [_RECIPIENT], message)

        failure = yield self.assertFailure(deferToThread(send), smtplib.SMTPDataError)
        self.assertEqual(failure.smtp_code, 550)
        self.assertTrue(failure.smtp_error.startswith(b"5.7.1 "), failure.smtp_error)
        self.assertEqual(self.rail.stored(), [])

    @inlineCallbacks
    def test_swaks(self) -> Any:
        """swaks with --tls-on-connect, the app certificate and verification against
        Rail's CA exits 0, and its message is queued with swaks's envelope."""
        swaks = need_tool("swaks", "swaks")
        out, err, code = yield run(
            swaks,
            "--server",
            "127.0.0.1",
            "--port",
            str(self.rail.smtps_port),
            "--tls-on-connect",
            "--tls-cert",
            str(self.rail.cert),
            "--tls-key",
            str(self.rail.key),
            "--tls-verify",
            "--tls-ca-path",
            str(self.rail.ca),
            "--ehlo",
            "swaks.example",
            "--from",
            SENDER,
            "--to",
            _RECIPIENT,
            "--timeout",
            "10",
        )
        self.assertEqual(code, 0, out + err)
        # swaks marks lines read over TLS with "<~".
        queued = re.search(rb"^<~  250 2\.0\.0 Ok: queued as (\w+)$", out, re.MULTILINE)
        assert queued is not None, out
        [stored] = self.rail.stored()
        self.assertEqual(stored.id, queued.group(1).decode("ascii"))
        self.assertEqual((stored.sender, stored.recipients), (SENDER, (_RECIPIENT,)))
        self.assertIn(b"\tby rail.test (Rail) with ESMTPSA id ", stored.data)
        self.assertIn(b"X-Mailer: swaks", stored.data)


class HTTPSubmissionTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:
        need_tool("curl", "curl")
        self.rail: RunningRail = yield start_rail(self)

    @inlineCallbacks
    def curl(self, *args: str) -> Any:
        """Run curl with the app certificate; fires with (status, headers, body)."""
        assert _CURL is not None
        out, err, code = yield run(
            _CURL,
            "-sS",
            "-i",
            "--max-time",
            "10",
            "--cacert",
            str(self.rail.ca),
            "--cert",
            str(self.rail.cert),
            "--key",
            str(self.rail.key),
            *args,
        )
        self.assertEqual(code, 0, err)
        return _http_response(out)

    def send(self, *headers: str, body_text: str = "Hello from curl.") -> Any:
        request = {
            "from": SENDER,
            "to": [_RECIPIENT],
            "subject": "interop",
            "body_text": body_text,
        }
        extra = [arg for header in headers for arg in ("-H", header)]
        return self.curl(
            "-H",
            "Content-Type: application/json",
            *extra,
            "--data-binary",
            json.dumps(request),
            self.rail.url("/api/v1/send"),
        )

    @inlineCallbacks
    def test_curl_send(self) -> Any:
        """POST /api/v1/send with curl's client certificate answers 202
        {id, status: queued, recipients: 1, suppressed: []}, and the message is in the
        queue."""
        status, headers, body = yield self.send()
        self.assertEqual(status, 202, body)
        answer = json.loads(body)
        self.assertEqual(set(answer), {"id", "status", "recipients", "suppressed"})
        self.assertEqual(
            (answer["status"], answer["recipients"], answer["suppressed"]), ("queued", 1, [])
        )
        stored = self.rail.message(answer["id"])
        assert stored is not None
        self.assertEqual((stored.sender, stored.recipients), (SENDER, (_RECIPIENT,)))
        self.assertEqual((stored.client, stored.channel), ("app", "api"))
        self.assertIn(b"Hello from curl.", stored.data)

    @inlineCallbacks
    def test_curl_idempotency_key(self) -> Any:
        """The same Idempotency-Key twice answers the same id; the second answer carries
        Idempotent-Replayed: true and nothing more is queued."""
        key = "Idempotency-Key: interop-1"
        status, first_headers, first = yield self.send(key)
        self.assertEqual(status, 202, first)
        status, headers, second = yield self.send(key)
        self.assertEqual(status, 202, second)
        self.assertEqual(json.loads(second)["id"], json.loads(first)["id"])
        self.assertNotIn("idempotent-replayed", first_headers)
        self.assertEqual(headers.get("idempotent-replayed"), "true")
        self.assertEqual([m.id for m in self.rail.stored()], [json.loads(first)["id"]])

    @inlineCallbacks
    def test_curl_message_status(self) -> Any:
        """GET /api/v1/messages/{id} of a message just sent answers 200 with its
        recipient queued."""
        status, _, body = yield self.send()
        self.assertEqual(status, 202, body)
        message_id = json.loads(body)["id"]
        status, _, body = yield self.curl(self.rail.url(f"/api/v1/messages/{message_id}"))
        self.assertEqual(status, 200, body)
        answer = json.loads(body)
        self.assertEqual(answer["id"], message_id)
        self.assertEqual(
            [(r["address"], r["status"]) for r in answer["recipients"]],
            [(_RECIPIENT, "queued")],
        )
