"""Crash safety: mail acknowledged with 250 or 202 survives SIGKILL at any moment.

Clients submit over SMTPS and the HTTP API from threads while the server process is killed
with SIGKILL at random moments and restarted. Afterwards every acknowledged message must
be in the queue exactly once, with the bytes that were sent (hash compared).

The same test runs on each store backend: SQLite under the data directory, and a
PostgreSQL database of the test cluster (``storage.backend: postgresql``), whose rows are
read back directly (:mod:`tests.integration.stores`).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import smtplib
import ssl
import threading
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.integration.processes import (
    free_port,
    other_listeners,
    rail,
    start_twistd,
    wait_for_port,
)
from tests.integration.stores import backend_for, stored_messages

_ROUNDS = 3
_SMTP_CLIENTS = 4
_HTTP_CLIENTS = 2


class _Clients:
    """Submitting threads; each records what the server acknowledged."""

    def __init__(self, directory: Path, smtp_port: int, https_port: int) -> None:
        self.context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
        self.context.load_cert_chain(str(directory / "app.crt"), str(directory / "app.key"))
        self.smtp_port = smtp_port
        self.https_port = https_port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.smtp_acked: dict[str, bytes] = {}  # queue id -> bytes sent
        self.api_acked: dict[str, str] = {}  # queue id -> unique token in the subject
        self.errors = 0
        self.threads = [
            threading.Thread(target=self._smtp, args=(n,)) for n in range(_SMTP_CLIENTS)
        ] + [threading.Thread(target=self._api, args=(n,)) for n in range(_HTTP_CLIENTS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _pause(self) -> None:
        with self.lock:
            self.errors += 1
        time.sleep(0.05)

    def _smtp(self, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                with smtplib.SMTP_SSL(
                    "127.0.0.1", self.smtp_port, context=self.context, timeout=5
                ) as client:
                    client.ehlo("crash.test")
                    while not self.stop.is_set():
                        n += 1
                        token = f"s{worker}-{n}"
                        data = (
                            f"From: app@rail.test\r\nTo: x@dest.example\r\n"
                            f"Subject: {token}\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                            f"Message-ID: <{token}@crash.test>\r\n\r\n"
                            + f"{token} {random.random()}\r\n"
                            * 20
                        ).encode()
                        client.mail("app@rail.test")
                        client.rcpt("x@dest.example")
                        code, reply = client.data(data)
                        if code == 250:
                            queue_id = reply.decode().rsplit(" ", 1)[-1]
                            with self.lock:
                                self.smtp_acked[queue_id] = data
            except (OSError, smtplib.SMTPException):
                self._pause()

    def _api(self, worker: int) -> None:
        n = 0
        while not self.stop.is_set():
            connection = http.client.HTTPSConnection(
                "127.0.0.1", self.https_port, context=self.context, timeout=5
            )
            try:
                while not self.stop.is_set():
                    n += 1
                    token = f"a{worker}-{n}"
                    body = json.dumps(
                        {
                            "from": "app@rail.test",
                            "to": ["y@dest.example"],
                            "subject": token,
                            "body_text": f"{token} body",
                        }
                    )
                    connection.request(
                        "POST", "/api/v1/send", body, {"Content-Type": "application/json"}
                    )
                    response = connection.getresponse()
                    answer = response.read()
                    if response.status == 202:
                        with self.lock:
                            self.api_acked[json.loads(answer)["id"]] = token
            except (OSError, http.client.HTTPException, ValueError):
                self._pause()
            finally:
                connection.close()


def _sleep(seconds: float) -> Any:
    return task.deferLater(reactor, seconds, lambda: None)


class _CrashSafety:
    """The crash test, mixed into a TestCase per backend (``backend``)."""

    backend = "sqlite"
    timeout = 180

    @inlineCallbacks
    def test_acknowledged_mail_survives_sigkill(self) -> Any:
        """Every message acknowledged before a SIGKILL is in the queue after restart,
        exactly once, with identical bytes."""
        backend = backend_for(self, self.backend)
        directory = Path(self.mktemp()).absolute()
        https_port, smtp_port = free_port(), free_port()
        out, err, code = yield rail(
            "init",
            "--dev",
            str(directory),
            "--https-port",
            str(https_port),
            "--submission-port",
            str(smtp_port),
            *other_listeners(),
        )
        self.assertEqual(code, 0, err)
        config = str(directory / "rail.yaml")
        backend.configure(Path(config))
        server = start_twistd(["rail", "--config", config])
        try:
            yield wait_for_port(smtp_port, server)
            backend.require_used(directory / "data")
        except BaseException:
            server.signal("TERM")
            yield server.ended
            raise
        clients = _Clients(directory, smtp_port, https_port)
        clients.start()
        try:
            for _ in range(_ROUNDS):
                yield _sleep(random.uniform(0.5, 1.5))
                server.signal("KILL")
                yield server.ended
                server = start_twistd(["rail", "--config", config])
                yield wait_for_port(smtp_port, server)
                yield wait_for_port(https_port, server)
            yield _sleep(0.5)
        finally:
            done = threading.Thread(target=clients.join)
            done.start()
            while done.is_alive():
                yield _sleep(0.05)
            server.signal("TERM")
            yield server.ended

        with backend.connect(directory / "data") as connection:
            stored = {message.id: message for message in stored_messages(connection)}
        self.assertGreater(len(clients.smtp_acked), 0)
        self.assertGreater(len(clients.api_acked), 0)
        self.assertGreater(clients.errors, 0, "no client ever saw the server die")
        for queue_id, sent in clients.smtp_acked.items():
            message = stored[queue_id]
            self.assertEqual(hashlib.sha256(message.data).hexdigest(), message.sha256)
            # Rail only prepends Received to a message that has From, Date and Message-ID.
            self.assertTrue(message.data.endswith(b"\r\n" + sent), queue_id)
            self.assertTrue(message.data.startswith(b"Received: "))
        for queue_id, token in clients.api_acked.items():
            message = stored[queue_id]
            self.assertEqual(hashlib.sha256(message.data).hexdigest(), message.sha256)
            self.assertIn(f"Subject: {token}\r\n".encode(), message.data)
        tokens = [
            line.split(b": ", 1)[1]
            for message in stored.values()
            for line in message.data.split(b"\r\n")
            if line.startswith(b"Subject: ")
        ]
        self.assertEqual(len(tokens), len(set(tokens)), "a message was stored twice")


class SQLiteCrashSafetyTests(_CrashSafety, TestCase):
    backend = "sqlite"


class PostgreSQLCrashSafetyTests(_CrashSafety, TestCase):
    backend = "postgresql"
