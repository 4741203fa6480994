"""Two nodes on one PostgreSQL database: a client's rate limit counts both nodes'
acceptances (issue 17).

Two service trees are built as ``twistd rail`` builds them, each with its own data
directory, listeners on 127.0.0.1 and node id, both with ``storage.backend: postgresql``
and the same DSN. A client limited to 3 messages a minute sends 2 through node A's API
and 1 through node B's; then node A's API answers 429 and node B's SMTP ``452 4.7.0``.
The test waits for each node's poller to have added the other's messages to its
counters (its ``merged`` count), never for a time.
"""

from __future__ import annotations

import json
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from rail.service import build_service
from rail.shared.registry import registry_source
from rail.store import lease
from tests.integration.fixtures import make_config
from tests.integration.test_client_limits import _Recorder
from tests.integration.test_header_limits import smtp_session
from tests.integration.tlsclient import https_request
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
