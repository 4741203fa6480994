"""SIGTERM against a real ``twistd rail`` with port-25 sessions open: the idle one gets
``421 4.3.2`` at once, the one in DATA finishes its message (``250``, stored) during the
grace period, then gets ``421 4.3.2`` (RFC 5321 §3.8), and Rail exits cleanly."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial.unittest import TestCase

from rail.store.schema import database_path
from tests.integration.processes import free_port, rail, start_twistd, wait_for_port
from tests.support.dnsserver import start_dns

SHUTTING_DOWN = b"421 4.3.2 Service shutting down; closing connection"


class _Client(protocol.Protocol):
    """Collects reply lines; ``wait_for(prefix)`` fires once a line starting with
    ``prefix`` has arrived."""

    def __init__(self) -> None:
        self.buffer = b""
        self.lines: list[bytes] = []
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._waiting: list[tuple[bytes, defer.Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        *complete, self.buffer = self.buffer.split(b"\r\n")
        self.lines += complete
        for entry in list(self._waiting):
            if any(line.startswith(entry[0]) for line in complete):
                self._waiting.remove(entry)
                entry[1].callback(None)

    def wait_for(self, prefix: bytes) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append((prefix, d))
        return d

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


class SigtermTests(TestCase):
    timeout = 60

    async def test_inbound_sessions_at_sigterm(self) -> None:
        """An idle inbound session is answered 421 4.3.2 and closed as soon as Rail
        stops; a session in DATA sends the rest of its message, gets 250 (the message is
        in the spool), then 421 4.3.2; Rail then exits on SIGTERM without a traceback."""
        dns_server = await start_dns(reactor)
        self.addCleanup(dns_server.stop)
        directory = Path(self.mktemp()).absolute()
        inbound_port = free_port()
        out, err, code = await rail(
            *("init", "--dev", str(directory)),
            *("--https-port", str(free_port()), "--submission-port", str(free_port())),
            *("--inbound-port", str(inbound_port), "--http-port", str(free_port())),
            *("--dns-port", str(free_port())),
        )
        self.assertEqual(code, 0, err)
        config_path = directory / "rail.yaml"
        document = yaml.safe_load(config_path.read_text())
        document["listen"].update(http=None, dns=None)
        document["inbound"]["nameservers"] = [f"127.0.0.1:{dns_server.port}"]
        document["shutdown"].update(drain_delay="0s", grace_period="30s")
        config_path.write_text(yaml.safe_dump(document))
        server = start_twistd(["rail", "--config", str(config_path)])

        def stop() -> Any:
            if not server.ended.called:
                server.signal("KILL")
            return server.ended

        self.addCleanup(stop)
        await wait_for_port(inbound_port, server)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", inbound_port)

        idle = _Client()
        greeted = idle.wait_for(b"250 ")
        await connectProtocol(endpoint, idle)
        idle.send(b"EHLO idle.example\r\n")
        busy = _Client()
        started = busy.wait_for(b"354 ")
        await connectProtocol(endpoint, busy)
        busy.send(
            b"EHLO busy.example\r\nMAIL FROM:<someone@outside.test>\r\n"
            b"RCPT TO:<app@rail.test>\r\nDATA\r\nFrom: <someone@outside.test>\r\n"
        )
        await greeted
        await started

        server.signal("TERM")
        await idle.closed
        self.assertEqual(idle.lines[-1], SHUTTING_DOWN)
        self.assertFalse(busy.closed.called)

        busy.send(b"Subject: finished during the grace period\r\n\r\nbody\r\n.\r\n")
        await busy.closed
        self.assertTrue(busy.lines[-2].startswith(b"250 2.0.0 Ok: queued as "), busy.lines)
        self.assertEqual(busy.lines[-1], SHUTTING_DOWN)
        code = await server.ended
        self.assertEqual(code, -signal.SIGTERM)
        self.assertNotIn(b"Traceback", bytes(server.output))
        queued = busy.lines[-2].rsplit(b" ", 1)[1].decode()
        with sqlite3.connect(database_path(directory / "data" / "queue")) as db:
            rows = db.execute("SELECT subject FROM inbound WHERE id = ?", (queued,)).fetchall()
        self.assertEqual(rows, [("finished during the grace period",)])
