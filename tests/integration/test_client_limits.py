"""Per-client rate limits and the sandbox over real sockets and real mutual TLS, in the
service tree exactly as ``twistd rail`` builds it.

The smarthost is a listening socket on loopback that records every connection (and
closes it): a sandboxed client's mail must never reach it, another client's does."""

from __future__ import annotations

import json
import sqlite3
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from rail.config.schema import ClientLimits
from rail.delivery.sandbox import SANDBOX_REPLY
from rail.events.model import EVENT_TYPES
from rail.events.subscriptions import Subscription, Subscriptions
from rail.pki.issue import ClientRequest
from rail.pki.operations import issue_client
from rail.policy.rates import ClientRates
from rail.service import build_service, seed_rates
from rail.shared.registry import registry_source
from rail.store.schema import database_path
from tests.integration.fixtures import make_config
from tests.integration.test_header_limits import smtp_session, transaction
from tests.integration.tlsclient import https_request
from tests.store.test_contract import make_message, open_sqlite

_MESSAGE = b"From: <app@rail.test>\r\nSubject: hi\r\n\r\nbody\r\n"


class _Recorder(ServerFactory):
    """Counts connections and closes each at once (the delivery is then deferred)."""

    def __init__(self) -> None:
        self.connections = 0

    def buildProtocol(self, addr: Any) -> Protocol:
        self.connections += 1
        return _Close()


class _Close(Protocol):
    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


class ClientLimitTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.recorder = _Recorder()
        listening = reactor.listenTCP(0, self.recorder, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        base = Path(self.mktemp()).absolute()
        base.mkdir(parents=True)
        data = base / "data"
        self.config = make_config(
            data,
            clients_default={"limits": {"messages_per_minute": 2}},
            clients={"tester": {"sandbox": True, "limits": {"messages_per_minute": None}}},
            delivery={
                "smarthost": {
                    "host": "127.0.0.1",
                    "port": listening.getHost().port,
                    "tls": "opportunistic",
                },
                "retry": ["1h"],
            },
        )
        self.pairs = {}
        for name in ("app", "tester"):
            request = ClientRequest(
                name=name,
                emails=(f"{name}@rail.test",),
                webhook="https://app.example/hook",
                key_type="ed25519",
                validity=timedelta(days=30),
            )
            issue_client(
                self.config, request, base, datetime.now(UTC), source=registry_source(self.config)
            )
            self.pairs[name] = (base / f"{name}.crt", base / f"{name}.key")
        self.ca_file = data / "ca" / "ca.crt"
        self.service = build_service(self.config, reactor)
        store = self.service.getServiceNamed("store").store
        store._writer.subscriptions = Subscriptions(
            {"tester": Subscription(frozenset(EVENT_TYPES))}
        )
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def port(self, name: str) -> int:
        port: int = self.service.getServiceNamed(name).port.getHost().port
        return port

    def mtls(self, name: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(*(str(p) for p in self.pairs[name]))
        return context

    def send(self, name: str, **fields: Any) -> Any:
        body = json.dumps(
            {
                "from": f"{name}@rail.test",
                "to": ["b@example.org"],
                "subject": "s",
                "body_text": "b",
                **fields,
            }
        ).encode()
        return deferToThread(
            https_request,
            self.port("https"),
            "POST",
            "/api/v1/send",
            self.ca_file,
            cert=self.pairs[name],
            body=body,
            extra_headers={"Content-Type": "application/json"},
        )

    @inlineCallbacks
    def wait_for(self, condition: Any) -> Any:
        """Until ``condition()`` is true; the test's timeout bounds it."""
        while not (yield condition()):
            yield task.deferLater(reactor, 0.05, lambda: None)

    @inlineCallbacks
    def test_limit_across_smtp_and_api(self) -> Any:
        """Two messages over SMTPS use up the client's minute: the third MAIL FROM is
        ``452 4.7.0``, and the API answers 429 RATE_LIMITED with Retry-After."""
        steps = [b"EHLO app.example\r\n"]
        steps += transaction("app@rail.test", "to@dest.example", _MESSAGE)
        steps += transaction("app@rail.test", "to@dest.example", _MESSAGE)
        steps.append(b"MAIL FROM:<app@rail.test>\r\n")
        replies = yield deferToThread(
            smtp_session, self.port("submission"), self.mtls("app"), steps
        )
        self.assertTrue(replies[5].startswith(b"250 2.0.0 Ok: queued"), replies)
        self.assertTrue(replies[9].startswith(b"250 2.0.0 Ok: queued"), replies)
        self.assertTrue(
            replies[10].startswith(b"452 4.7.0 message rate limit (messages_per_minute)"),
            replies[10],
        )
        response = yield self.send("app")
        self.assertEqual(response.status, 429)
        self.assertEqual(json.loads(response.body)["error"]["code"], "RATE_LIMITED")
        self.assertTrue(1 <= int(response.headers["retry-after"]) <= 60, response.headers)

    @inlineCallbacks
    def test_sandbox_makes_no_connection(self) -> Any:
        """A sandboxed client's message is signed and recorded sent with the sandbox
        reply and a message.delivered event with sandbox set, and nothing connects to
        the smarthost; another client's message does connect."""
        response = yield self.send("tester")
        self.assertEqual(response.status, 202, response.body)
        message_id = json.loads(response.body)["id"]
        path = database_path(self.config.data_dir / "queue")

        def read(query: str) -> Any:
            def run() -> Any:
                with sqlite3.connect(path) as connection:
                    return connection.execute(query, (message_id,)).fetchall()

            return deferToThread(run)

        yield self.wait_for(
            lambda: read("SELECT 1 FROM recipients WHERE message_id = ? AND status = 'sent'")
        )
        replies = yield read("SELECT last_reply FROM recipients WHERE message_id = ?")
        self.assertEqual(replies, [(SANDBOX_REPLY,)])
        events = yield read(
            "SELECT type, recipient, sandbox FROM events WHERE message_id = ?"
            " AND type != 'message.accepted'"
        )
        self.assertEqual(events, [("message.delivered", "b@example.org", 1)])
        self.assertEqual(self.recorder.connections, 0)
        other = yield self.send("app")
        self.assertEqual(other.status, 202)
        yield self.wait_for(lambda: task.deferLater(reactor, 0, lambda: self.recorder.connections))


class RestartTests(TestCase):
    @inlineCallbacks
    def test_restart_keeps_the_days_count(self) -> Any:
        """After a restart (a new store on the same queue), the counters are seeded with
        the last day's messages and recipients per client: the client's next message is
        refused where the day's limit was reached; older mail and DSNs do not count."""
        directory = Path(self.mktemp()) / "queue"
        store = open_sqlite(self, directory)
        now = reactor.seconds()
        for when, recipients in ((now - 90_000, 5), (now - 3600, 2), (now - 60, 1)):
            yield store.accept(
                make_message(client="app", received_at=when, recipients=("a@x.net",) * recipients)
            )
        yield store.close()
        again = open_sqlite(self, directory)
        rates = ClientRates(reactor, lambda client: ClientLimits(recipients_per_day=4))
        yield seed_rates(rates, reactor, again)
        self.assertIsNone(rates.check_message("app", 1))
        refused = rates.check_message("app", 2)
        assert refused is not None
        self.assertEqual(refused.limit, "recipients_per_day")
        self.assertIsNone(rates.check_message("other", 4))
