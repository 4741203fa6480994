"""``twistd rail --workers 2`` as an operator runs it: two worker processes on the
parent's sockets, real mTLS clients, signals, a worker killed and restarted."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.integration.processes import (
    free_port,
    other_listeners,
    rail,
    start_twistd,
    wait_for_output,
)
from tests.integration.tlsclient import PersistentConnection, https_request
from tests.support.postgres import postgres_dsn

_MESSAGE = (
    b"From: app@rail.test\r\nTo: someone@example.com\r\nSubject: workers\r\n\r\nHello.\r\n.\r\n"
)


class WorkersTests(TestCase):
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
        self.config = self.dir / "rail.yaml"
        self.cert = (self.dir / "app.crt", self.dir / "app.key")

    def use_postgresql(self) -> None:
        dsn = postgres_dsn(self)
        text = self.config.read_text()
        backend = f"storage:\n  backend: postgresql\n  dsn: '{dsn}'\n"
        self.config.write_text(text.replace("storage:\n", backend, 1))

    def session(self) -> PersistentConnection:
        """An mTLS SMTP session past EHLO (blocking: run in a thread)."""
        connection = PersistentConnection(self.smtps, self.dir / "ca.crt", self.cert)
        assert connection.smtp_reply().startswith(b"220 ")
        assert connection.smtp(b"EHLO client.example").startswith(b"250")
        return connection

    def send(self, connection: PersistentConnection) -> bytes:
        """One message on an open session; the reply to its end of data."""
        for line in (b"MAIL FROM:<app@rail.test>", b"RCPT TO:<someone@example.com>", b"DATA"):
            connection.smtp(line)
        connection.tls.sendall(_MESSAGE)
        return connection.smtp_reply()

    @inlineCallbacks
    def sessions(self, count: int) -> Any:
        """``count`` sessions open at once, each having sent one message."""
        opened = yield gatherResults([deferToThread(self.session) for _ in range(count)])
        replies = yield gatherResults([deferToThread(self.send, c) for c in opened])
        for connection in opened:
            connection.tls.close()
        return replies

    @staticmethod
    def pids(output: bytes) -> dict[int, int]:
        """The latest pid of each worker, from the parent's log."""
        found: dict[int, int] = {}
        for index, pid in re.findall(rb"worker (\d+) started \(pid (\d+)\)", output):
            found[int(index)] = int(pid)
        return found

    @inlineCallbacks
    def test_two_workers(self) -> Any:
        """Both workers take mTLS sessions on the parent's listener; SIGHUP reaches both,
        SIGUSR1 ends neither; /metrics answers for both; a worker killed with SIGKILL is
        restarted and the listener keeps answering; SIGTERM stops everything."""
        self.use_postgresql()
        server = start_twistd(["rail", "--config", str(self.config), "--workers", "2"])
        self.addCleanup(lambda: server.ended.called or server.signal("KILL"))
        yield wait_for_output(b"all 2 workers ready", server, timeout=60)

        replies = yield self.sessions(20)
        self.assertEqual({reply[:4] for reply in replies}, {b"250 "})
        yield wait_for_output(b"#info w0] accepted id=", server)
        yield wait_for_output(b"#info w1] accepted id=", server)

        server.transport.signalProcess(signal.SIGHUP)
        yield wait_for_output(b"[rail.reload#info w0] reload done", server)
        yield wait_for_output(b"[rail.reload#info w1] reload done", server)
        # SIGUSR1 (log rotation) reaches the workers without ending them (its default).
        server.transport.signalProcess(signal.SIGUSR1)
        yield wait_for_output(b"SIGUSR1: passed to 2 workers", server)

        ca = self.dir / "ca.crt"
        metrics = yield deferToThread(https_request, self.https, "GET", "/metrics", ca)
        self.assertEqual(metrics.status, 200)
        self.assertIn(b'rail_worker_up{worker="0"} 1.0', metrics.body)
        self.assertIn(b'rail_worker_up{worker="1"} 1.0', metrics.body)
        stats = yield deferToThread(https_request, self.https, "GET", "/stats", ca)
        self.assertEqual(json.loads(stats.body)["worker"]["count"], 2)

        self.assertNotIn(b"died after", bytes(server.output))  # nothing ended a worker
        killed = self.pids(bytes(server.output))[1]
        server.output.clear()
        os.kill(killed, signal.SIGKILL)
        yield wait_for_output(b"worker 1 (pid %d) died" % killed, server)
        yield wait_for_output(b"ready again", server, timeout=60)
        self.assertNotEqual(self.pids(bytes(server.output))[1], killed)
        replies = yield self.sessions(20)
        self.assertEqual({reply[:4] for reply in replies}, {b"250 "})

        server.signal("TERM")
        code = yield server.ended
        self.assertEqual(code, -signal.SIGTERM)
        self.assertIn(b"all workers stopped", bytes(server.output))
        self.assertNotIn(b"Traceback", bytes(server.output))

    @inlineCallbacks
    def test_parent_killed(self) -> Any:
        """Workers whose parent was killed (SIGKILL: no SIGTERM passed on) stop by
        themselves rather than serve on alone."""
        self.use_postgresql()
        server = start_twistd(["rail", "--config", str(self.config), "--workers", "2"])
        self.addCleanup(lambda: server.ended.called or server.signal("KILL"))
        yield wait_for_output(b"all 2 workers ready", server, timeout=60)
        workers = list(self.pids(bytes(server.output)).values())
        server.signal("KILL")
        yield server.ended
        for _ in range(600):  # bounded: each worker drains, then exits
            if not any(_alive(pid) for pid in workers):
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual([pid for pid in workers if _alive(pid)], [])
        self.assertEqual(bytes(server.output).count(b"the parent process is gone"), 2)

    @inlineCallbacks
    def test_failed_start(self) -> Any:
        """A worker that cannot start (a corrupt CA key) ends the parent with exit 1 and
        the worker's one line naming the file."""
        self.use_postgresql()
        key = self.dir / "data" / "ca" / "ca.key"
        key.write_bytes(b"not a key\n")
        server = start_twistd(["rail", "--config", str(self.config), "--workers", "2"])
        code = yield server.ended
        self.assertEqual(code, 1)
        self.assertIn(f"rail: {key}: ".encode(), bytes(server.output))
        self.assertIn(b"worker 0 (pid", bytes(server.output))
        self.assertNotIn(b"Traceback", bytes(server.output))

    @inlineCallbacks
    def test_sqlite_refused(self) -> Any:
        """With SQLite (the default store) more than one worker is refused at start:
        exit 2, one line naming the settings; from the option or the configuration."""
        server = start_twistd(["rail", "--config", str(self.config), "--workers", "2"])
        code = yield server.ended
        self.assertEqual(code, 2)
        self.assertEqual(
            bytes(server.output).strip(),
            b"rail: workers: 2 worker processes need storage.backend: postgresql"
            b" (SQLite's queue is for one process); set workers: 1 or use PostgreSQL",
        )
        self.config.write_text(self.config.read_text() + "\nworkers: 2\n")
        server = start_twistd(["rail", "--config", str(self.config)])
        code = yield server.ended
        self.assertEqual(code, 2)
        self.assertIn(b"need storage.backend: postgresql", bytes(server.output))


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its new parent to reap it does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status
