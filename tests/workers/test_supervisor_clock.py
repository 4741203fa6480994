"""rail.workers.supervisor's timing, with a Clock and stand-in processes: restart delays,
the end of a crash loop's count, the deadline of a stop."""

from __future__ import annotations

import shutil
import signal
import socket
from typing import Any

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from rail.workers.plan import decode
from rail.workers.restart import Backoff
from rail.workers.supervisor import Supervisor


class _Process:
    """What spawnProcess returns: a pid, and the signals sent to it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[int] = []

    def signalProcess(self, signum: int) -> None:
        self.signals.append(signum)


class _Reactor(Clock):
    """A Clock that spawns stand-in processes."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, _Process, dict[str, str], dict[int, Any]]] = []

    def spawnProcess(
        self, protocol: Any, executable: str, args: list[str], env: Any, childFDs: Any
    ) -> _Process:
        process = _Process(1000 + len(self.spawned))
        protocol.makeConnection(process)
        self.spawned.append((protocol, process, env, childFDs))
        return process


def _ended(code: int | None = 1, signum: int | None = None) -> Failure:
    if code == 0:
        return Failure(ProcessDone(0))
    return Failure(ProcessTerminated(exitCode=code, signal=signum))


class SupervisorClockTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = _Reactor()
        self.listening = socket.socket()
        self.addCleanup(self.listening.close)
        self.states: list[str] = []
        self.gave_up: list[int] = []
        self.supervisor = Supervisor(
            reactor=self.reactor,
            count=2,
            balance="shared",
            bind=lambda: {"https": [self.listening]},
            argv=["twistd"],
            environ={"NOTIFY_SOCKET": "/run/systemd/notify", "PATH": "/bin"},
            logs={1: 1, 2: 2},
            relay=lambda line: None,
            notify=self.states.append,
            give_up=self.gave_up.append,
            stop_timeout=40.0,
            backoff=Backoff(first=1.0, cap=8.0, stable=60.0),
            signals=False,
        )
        self.supervisor.privilegedStartService()
        self.supervisor.startService()
        self.addCleanup(shutil.rmtree, self.supervisor.peers, True)

    def ready(self, n: int) -> None:
        """The n-th spawned process says READY=1."""
        self.reactor.spawned[n][0].childDataReceived(3, b"READY=1\n")

    def start_both(self) -> None:
        self.ready(0)
        self.ready(1)
        self.assertEqual(self.states, ["READY=1"])

    def test_environment(self) -> None:
        """A worker gets RAIL_WORKER (its index, its descriptors) and not systemd's
        socket, which is the parent's to use; its socket is at descriptor 4."""
        self.ready(0)
        (_, _, env0, fds0), (_, _, env1, _) = self.reactor.spawned
        self.assertNotIn("NOTIFY_SOCKET", env0)
        self.assertEqual(decode(env0["RAIL_WORKER"]).index, 0)
        self.assertEqual(decode(env1["RAIL_WORKER"]).fds, {"https": 4})
        self.assertEqual(fds0[4], self.listening.fileno())
        self.assertEqual((fds0[0], fds0[3]), ("w", "r"))

    def test_crash_loop_backs_off(self) -> None:
        """A worker that keeps dying soon after its start waits 1, 2, 4, 8, 8 s."""
        self.start_both()
        delays = []
        for _ in range(5):
            self.reactor.advance(5)
            self.supervisor.workers[1].processEnded(_ended(signum=signal.SIGSEGV, code=None))
            (call,) = self.reactor.getDelayedCalls()
            delays.append(call.getTime() - self.reactor.seconds())
            self.reactor.advance(call.getTime() - self.reactor.seconds())
        self.assertEqual(delays, [1.0, 2.0, 4.0, 8.0, 8.0])
        self.assertEqual(len(self.reactor.spawned), 7)
        self.assertEqual(self.states, ["READY=1"])

    def test_long_run_resets_the_count(self) -> None:
        """After a run of at least ``stable`` seconds the next restart waits 1 s again."""
        self.start_both()
        self.supervisor.deaths[1] = 3
        self.reactor.advance(120)
        self.reactor.spawned[1][0].processEnded(_ended())
        (call,) = self.reactor.getDelayedCalls()
        self.assertEqual(call.getTime() - self.reactor.seconds(), 1.0)

    def test_stop_kills_after_the_deadline(self) -> None:
        """Stopping sends SIGTERM; a worker still running ``stop_timeout`` later gets
        SIGKILL; the stop fires once both have ended, and no restart is scheduled."""
        self.start_both()
        stopped = self.supervisor.stopService()
        (_, first, _, _), (_, second, _, _) = self.reactor.spawned
        self.assertEqual((first.signals, second.signals), ([signal.SIGTERM], [signal.SIGTERM]))
        self.assertEqual(self.states, ["READY=1", "STOPPING=1"])
        self.reactor.spawned[0][0].processEnded(_ended(code=None, signum=signal.SIGTERM))
        self.reactor.advance(39)
        self.assertEqual(second.signals, [signal.SIGTERM])
        self.reactor.advance(1)
        self.assertEqual(second.signals, [signal.SIGTERM, signal.SIGKILL])
        self.assertNoResult(stopped)
        self.reactor.spawned[1][0].processEnded(_ended(code=None, signum=signal.SIGKILL))
        self.successResultOf(stopped)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_cancels_a_pending_restart(self) -> None:
        """A restart waiting for its delay does not happen once the parent stops."""
        self.start_both()
        self.reactor.spawned[1][0].processEnded(_ended())
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        stopped = self.supervisor.stopService()
        self.reactor.spawned[0][0].processEnded(_ended(code=0))
        self.successResultOf(stopped)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_stop_during_start(self) -> None:
        """Stopped while worker 0 starts, the parent starts no other worker when worker
        0 then says it is ready, and tells systemd nothing of readiness."""
        stopped = self.supervisor.stopService()
        self.ready(0)
        self.assertEqual(len(self.reactor.spawned), 1)
        self.reactor.spawned[0][0].processEnded(_ended(code=None, signum=signal.SIGTERM))
        self.successResultOf(stopped)
        self.assertEqual(self.states, ["STOPPING=1"])

    def test_reload_asked_by_a_worker(self) -> None:
        """RELOAD=1 from one worker sends SIGHUP to every other live worker."""
        self.start_both()
        self.reactor.spawned[0][0].childDataReceived(3, b"RELOAD=1\n")
        (_, first, _, _), (_, second, _, _) = self.reactor.spawned
        self.assertEqual((first.signals, second.signals), ([], [signal.SIGHUP]))

    def test_late_failure_of_a_second_worker(self) -> None:
        """Worker 1 failing before every worker was ready gives up with its status."""
        self.ready(0)
        self.reactor.spawned[1][0].processEnded(_ended(code=2))
        self.assertEqual(self.gave_up, [2])
        self.assertEqual(self.states, [])
