"""rail.workers.supervisor with real child processes: a tiny stand-in for ``twistd rail``
that adopts the parent's socket, says READY=1 and answers signals."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from rail.config import parse_config
from rail.workers.plan import Balance
from rail.workers.restart import Backoff
from rail.workers.sockets import bind_all
from rail.workers.supervisor import Supervisor

# Prints on stdout (relayed by the parent), says READY=1 on descriptor 3, answers each
# connection on its "https" socket with its index. TINY_FAIL=k: worker k fails at start.
_TINY = r"""
import json, os, signal, socket, sys
spec = json.loads(os.environ["RAIL_WORKER"])
index = spec["index"]
if os.environ.get("TINY_FAIL") == str(index):
    sys.stderr.write("tiny: cannot start\n")
    sys.exit(3)
def hup(*_):
    print(f"w{index} SIGHUP", flush=True)
def term(*_):
    print(f"w{index} SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGHUP, hup)
signal.signal(signal.SIGTERM, term)
listener = socket.socket(fileno=spec["fds"]["https"])
print(f"w{index} up {os.getpid()}", flush=True)
os.write(3, b"READY=1\n")
while True:
    try:
        connection, _ = listener.accept()
    except BlockingIOError:
        import select
        select.select([listener], [], [])
        continue
    connection.setblocking(True)
    connection.sendall(f"w{index}\n".encode())
    connection.close()
"""


def _config() -> Any:
    data = {
        "hostname": "mail.example.com",
        "tls": {"self_signed": True},
        "listen": {
            "https": "tcp:0:interface=127.0.0.1",
            "submission": None,
            "inbound": None,
            "http": None,
            "dns": None,
        },
    }
    return parse_config(data, Path("/"))


def _ask(port: int) -> str:
    """Connect and read the answering worker's line (in a thread: it blocks)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        return s.makefile().readline().strip()


class Harness:
    """A supervisor of tiny workers, and what it said."""

    def __init__(self, test: TestCase, count: int, balance: Balance, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.states: list[str] = []
        self.gave_up: list[int] = []
        self._waiting: list[tuple[str, Deferred[str]]] = []
        config = _config()
        self.supervisor = Supervisor(
            reactor=reactor,
            count=count,
            balance=balance,
            bind=lambda: bind_all(config, balance, count),
            argv=[sys.executable, "-c", _TINY],
            environ={**os.environ, **env},
            logs={1: "r", 2: "r"},
            relay=self._relay,
            notify=self._notify,
            give_up=self._give_up,
            stop_timeout=30.0,
            backoff=Backoff(first=0.01),
            signals=False,
        )
        test.addCleanup(self._stop)

    def _stop(self) -> Any:
        if self.supervisor.running:
            return self.supervisor.stopService()
        return None

    @property
    def port(self) -> int:
        sockets = self.supervisor.sockets["https"]
        port: int = sockets[0].getsockname()[1]
        return port

    def _relay(self, line: bytes) -> None:
        text = line.decode().strip()
        self.lines.append(text)
        self._check()

    def _notify(self, state: str) -> None:
        self.states.append(state)
        self._check()

    def _give_up(self, code: int) -> None:
        self.gave_up.append(code)
        self._check()

    def _check(self) -> None:
        heard = [*self.lines, *self.states, *(f"gave up {c}" for c in self.gave_up)]
        for entry in list(self._waiting):
            text, d = entry
            found = next((line for line in heard if line.startswith(text)), None)
            if found is not None:
                self._waiting.remove(entry)
                d.callback(found)

    def heard(self, text: str) -> Deferred[str]:
        """Fires with the first line (relayed, or a state told to systemd) that starts
        with ``text``."""
        d: Deferred[str] = Deferred()
        self._waiting.append((text, d))
        self._check()
        return d


class SupervisorTests(TestCase):
    timeout = 120

    def harness(self, count: int = 2, balance: Balance = "reuseport", **env: str) -> Harness:
        harness = Harness(self, count, balance, env)
        harness.supervisor.privilegedStartService()
        harness.supervisor.startService()
        return harness

    @inlineCallbacks
    def test_ready_when_every_worker_is(self) -> Any:
        """Worker 0 starts first, the others once it is ready; systemd hears READY=1
        once, when every worker has said it."""
        harness = self.harness(count=3)
        yield harness.heard("READY=1")
        ups = [line.split() for line in harness.lines if " up " in line]
        self.assertEqual(ups[0][0], "w0")
        self.assertEqual(sorted(up[0] for up in ups), ["w0", "w1", "w2"])
        self.assertEqual(harness.states, ["READY=1"])

    @inlineCallbacks
    def test_workers_accept_on_the_parents_socket(self) -> Any:
        """Connections to the listener the parent bound are answered by the workers,
        by each of them (reuseport: the kernel spreads them)."""
        harness = self.harness(count=2, balance="reuseport")
        yield harness.heard("READY=1")
        answers = set()
        for _ in range(30):
            answer = yield deferToThread(_ask, harness.port)
            answers.add(answer)
        self.assertEqual(answers, {"w0", "w1"})

    @inlineCallbacks
    def test_shared_socket(self) -> Any:
        """With one shared socket, the workers accept from the same listener."""
        harness = self.harness(count=2, balance="shared")
        yield harness.heard("READY=1")
        self.assertEqual(len(harness.supervisor.sockets["https"]), 1)
        answer = yield deferToThread(_ask, harness.port)
        self.assertIn(answer, {"w0", "w1"})

    @inlineCallbacks
    def test_signals_reach_every_worker(self) -> Any:
        """SIGHUP passed on by the parent reaches each worker."""
        harness = self.harness(count=2)
        yield harness.heard("READY=1")
        harness.supervisor.forward(signal.SIGHUP)
        yield harness.heard("w0 SIGHUP")
        yield harness.heard("w1 SIGHUP")

    @inlineCallbacks
    def test_stop(self) -> Any:
        """Stopping sends SIGTERM to every worker and fires once all have ended;
        systemd hears STOPPING=1; the parent's sockets are closed."""
        harness = self.harness(count=2)
        yield harness.heard("READY=1")
        listening = harness.supervisor.sockets["https"]
        yield harness.supervisor.stopService()
        self.assertIn("w0 SIGTERM", harness.lines)
        self.assertIn("w1 SIGTERM", harness.lines)
        self.assertEqual(harness.states, ["READY=1", "STOPPING=1"])
        self.assertTrue(all(w.ended for w in harness.supervisor.workers.values()))
        self.assertEqual([s.fileno() for s in listening], [-1, -1])
        self.assertFalse(os.path.exists(harness.supervisor.peers))

    @inlineCallbacks
    def test_dead_worker_restarted(self) -> Any:
        """A worker killed with SIGKILL is started again, with its index, and serves."""
        harness = self.harness(count=2)
        yield harness.heard("READY=1")
        first = harness.supervisor.workers[1].pid
        assert first is not None
        harness.lines.clear()
        os.kill(first, signal.SIGKILL)
        line = yield harness.heard("w1 up")
        self.assertNotEqual(int(line.split()[2]), first)
        self.assertEqual(harness.supervisor.deaths[1], 1)
        self.assertEqual(harness.states, ["READY=1"])  # told once, not again
        answers = set()
        for _ in range(30):
            answer = yield deferToThread(_ask, harness.port)
            answers.add(answer)
        self.assertEqual(answers, {"w0", "w1"})

    @inlineCallbacks
    def test_failure_at_start(self) -> Any:
        """A worker that fails before Rail was ready ends the parent with its status;
        its error line reaches the log; no other worker is started."""
        harness = self.harness(count=2, TINY_FAIL="0")
        yield harness.heard("gave up 3")
        self.assertIn("tiny: cannot start", harness.lines)
        self.assertEqual(list(harness.supervisor.workers), [0])
        self.assertEqual(harness.states, [])
