"""Two nodes on one PostgreSQL database, and two ``twistd rail --workers 2`` workers: a
client's rate limit counts both nodes' acceptances (issue 17).

Two service trees are built as ``twistd rail`` builds them, each with its own data
directory, listeners on 127.0.0.1 and node id, both with ``storage.backend: postgresql``
and the same DSN. A client limited to 3 messages a minute sends 2 through node A's API
and 1 through node B's; then node A's API answers 429 and node B's SMTP ``452 4.7.0``.
The test waits for each node's poller to have added the other's messages to its
counters (its ``merged`` count), never for a time.
"""

from __future__ import annotations

import json
import re
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from rail.service import build_service
from rail.shared.registry import registry_source
from rail.store import lease
from tests.integration.fixtures import make_config
from tests.integration.processes import (
    free_port,
    other_listeners,
    rail,
    start_twistd,
    wait_for_output,
)
from tests.integration.test_client_limits import _Recorder
from tests.integration.test_header_limits import smtp_session
from tests.integration.tlsclient import PersistentConnection, https_request
from tests.support.postgres import postgres_dsn

_log = Logger()


class SharedRateTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        recorder = _Recorder()
        listening = reactor.listenTCP(0, recorder, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        self.base = Path(self.mktemp()).absolute()
        self.base.mkdir(parents=True)
        dsn = postgres_dsn(self)
        self.nodes: dict[str, Any] = {}
        for name in ("a", "b"):
            # Two nodes in one process: each gets a node id of its own, as two processes do.
            self.patch(lease, "_NODE", None)
            config = make_config(
                self.base / name,
                storage={"backend": "postgresql", "dsn": dsn},
                clients_default={"limits": {"messages_per_minute": 3}},
                delivery={
                    "smarthost": {
                        "host": "127.0.0.1",
                        "port": listening.getHost().port,
                        "tls": "opportunistic",
                    },
                    "retry": ["1h"],
                },
            )
            service = build_service(config, reactor)
            service.privilegedStartService()
            service.startService()
            self.addCleanup(service.stopService)
            self.nodes[name] = service
        self.assertNotEqual(self.store("a").node, self.store("b").node)
        self.config = make_config(self.base / "a", storage={"backend": "postgresql", "dsn": dsn})
        self.ca_file = self.base / "a" / "ca" / "ca.crt"
        request = ClientRequest(
            name="app",
            emails=("app@rail.test",),
            webhook=None,
            key_type="ed25519",
            validity=timedelta(days=30),
        )
        issued = issue_client(
            self.config, request, self.base, datetime.now(UTC), source=registry_source(self.config)
        )
        self.pair = (issued.certificate_path, issued.key_path)

    def store(self, node: str) -> Any:
        return self.nodes[node].getServiceNamed("store").store

    def port(self, node: str, listener: str) -> int:
        return int(self.nodes[node].getServiceNamed(listener).port.getHost().port)

    def send(self, node: str) -> Any:
        body = json.dumps(
            {"from": "app@rail.test", "to": ["b@example.org"], "subject": "s", "body_text": "b"}
        ).encode()
        return deferToThread(
            https_request,
            self.port(node, "https"),
            "POST",
            "/api/v1/send",
            self.ca_file,
            cert=self.pair,
            body=body,
            extra_headers={"Content-Type": "application/json"},
        )

    @inlineCallbacks
    def caught_up(self, node: str, messages: int) -> Any:
        """Until ``node``'s poller has added ``messages`` of the other node's to its
        counters (the test's timeout bounds it); the seconds it took."""
        poller = self.nodes[node].getServiceNamed("usage-poll")
        started = reactor.seconds()
        while poller.merged < messages:
            yield task.deferLater(reactor, 0.01, lambda: None)
        return reactor.seconds() - started

    @inlineCallbacks
    def test_limit_counts_both_nodes(self) -> Any:
        """2 messages through A and 1 through B use up the client's 3 a minute: after
        each node read the other's usage, A's API answers 429 RATE_LIMITED and B's MAIL
        FROM ``452 4.7.0``; exactly 3 were accepted in all."""
        # Both nodes know the new certificate (the shared registry) before sending.
        for node in ("a", "b"):
            yield self.wait_known(node)
        for _ in range(2):
            response = yield self.send("a")
            self.assertEqual(response.status, 202, response.body)
        took = yield self.caught_up("b", 2)
        _log.info("node B counted node A's messages {s:.2f} s after A answered", s=took)
        response = yield self.send("b")
        self.assertEqual(response.status, 202, response.body)
        took = yield self.caught_up("a", 1)
        _log.info("node A counted node B's message {s:.2f} s after B answered", s=took)
        response = yield self.send("a")
        self.assertEqual(response.status, 429, response.body)
        self.assertEqual(json.loads(response.body)["error"]["code"], "RATE_LIMITED")
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(*(str(p) for p in self.pair))
        replies = yield deferToThread(
            smtp_session,
            self.port("b", "submission"),
            context,
            [b"EHLO app.example\r\n", b"MAIL FROM:<app@rail.test>\r\n"],
        )
        self.assertTrue(
            replies[-1].startswith(b"452 4.7.0 message rate limit (messages_per_minute)"),
            replies,
        )
        response = yield self.send("b")
        self.assertEqual(response.status, 429, response.body)

        def accepted(connection: Any) -> int:
            return int(connection.execute("SELECT count(*) FROM messages").fetchone()[0])

        total = yield self.store("a")._read(accepted)
        self.assertEqual(total, 3)

    @inlineCallbacks
    def wait_known(self, node: str) -> Any:
        """Until ``node`` answers /api/who for the client (it follows the registry)."""
        while True:
            try:
                response = yield deferToThread(
                    https_request,
                    self.port(node, "https"),
                    "GET",
                    "/api/who",
                    self.ca_file,
                    cert=self.pair,
                )
            except Exception:  # the handshake refused: not known yet
                response = None
            if response is not None and response.status == 200:
                return
            yield task.deferLater(reactor, 0.05, lambda: None)


_SMTP_MESSAGE = (
    b"From: app@rail.test\r\nTo: someone@example.com\r\nSubject: rates\r\n\r\nHello.\r\n.\r\n"
)


class WorkerRateTests(TestCase):
    """``twistd rail --workers 2`` on PostgreSQL: one client's limit across both workers."""

    timeout = 180

    @inlineCallbacks
    def setUp(self) -> Any:
        self.dir = Path(self.mktemp()).absolute()
        self.https = free_port()
        self.smtps = free_port()
        out, err, code = yield rail(
            "init",
            "--dev",
            str(self.dir),
            "--https-port",
            str(self.https),
            "--submission-port",
            str(self.smtps),
            *other_listeners(),
        )
        self.assertEqual(code, 0, err)
        config = self.dir / "rail.yaml"
        text = config.read_text()
        backend = f"storage:\n  backend: postgresql\n  dsn: '{postgres_dsn(self)}'\n"
        limits = "clients_default:\n  limits:\n    messages_per_minute: 6\n"
        config.write_text(text.replace("storage:\n", backend, 1) + limits)
        self.server = start_twistd(["rail", "--config", str(config), "--workers", "2"])
        self.addCleanup(lambda: self.server.ended.called or self.server.signal("KILL"))
        yield wait_for_output(b"all 2 workers ready", self.server, timeout=60)

    def mail_from(self) -> bytes:
        """A new mTLS session's reply to MAIL FROM (blocking: run in a thread)."""
        connection = PersistentConnection(
            self.smtps, self.dir / "ca.crt", (self.dir / "app.crt", self.dir / "app.key")
        )
        try:
            assert connection.smtp_reply().startswith(b"220 ")
            assert connection.smtp(b"EHLO client.example").startswith(b"250")
            reply = connection.smtp(b"MAIL FROM:<app@rail.test>")
            if reply.startswith(b"250"):
                connection.smtp(b"RCPT TO:<someone@example.com>")
                connection.smtp(b"DATA")
                connection.tls.sendall(_SMTP_MESSAGE)
                reply = connection.smtp_reply()
            return reply
        finally:
            connection.tls.close()

    @inlineCallbacks
    def burst(self, sessions: int) -> Any:
        """``sessions`` sessions at once, each sending one message; their last replies."""
        replies = yield gatherResults([deferToThread(self.mail_from) for _ in range(sessions)])
        return replies

    def accepted_by(self) -> dict[int, int]:
        """Messages each worker accepted, from its log lines."""
        found = re.findall(rb"#info w(\d)\] accepted id=", bytes(self.server.output))
        return {index: found.count(str(index).encode()) for index in (0, 1)}

    @inlineCallbacks
    def synced(self) -> Any:
        """Until each worker's ``/stats`` says it merged every message the other accepted
        (a new HTTPS connection reaches either worker; the test's timeout bounds it)."""
        done: set[int] = set()
        while len(done) < 2:
            response = yield deferToThread(
                https_request, self.https, "GET", "/stats", self.dir / "ca.crt"
            )
            stats = json.loads(response.body)
            index = stats["worker"]["index"]
            accepted = self.accepted_by()
            if stats["shared_rate_limits"]["other_nodes_messages"] == accepted[1 - index]:
                done.add(index)
            else:
                yield task.deferLater(reactor, 0.05, lambda: None)

    @inlineCallbacks
    def test_limit_counts_both_workers(self) -> Any:
        """With 6 messages a minute: 3 sessions then 3 more are accepted (whichever worker
        takes them), once both workers counted each other's, the next 4 sessions are all
        refused ``452 4.7.0`` at MAIL FROM: 6 accepted in all."""
        for sent in (3, 6):
            replies = yield self.burst(3)
            self.assertEqual([reply[:4] for reply in replies], [b"250 "] * 3, replies)
            while sum(self.accepted_by().values()) < sent:  # the log lines are written
                yield task.deferLater(reactor, 0.05, lambda: None)
            yield self.synced()
        _log.info("accepted by worker: {split}", split=self.accepted_by())
        replies = yield self.burst(4)
        for reply in replies:
            self.assertTrue(
                reply.startswith(b"452 4.7.0 message rate limit (messages_per_minute)"), reply
            )
        self.assertEqual(sum(self.accepted_by().values()), 6)
        self.server.signal("TERM")
        yield self.server.ended
        self.assertNotIn(b"Traceback", bytes(self.server.output))
