"""The parent of ``twistd rail --workers N``: binds the listeners, starts the workers,
passes signals on, restarts a worker that dies. It does no mail work.

Start: every listener is bound in ``privilegedStartService`` (before ``--uid`` drops
privileges); worker 0 starts first, alone, so that what a first start creates under
``data_dir`` (the CA, keys, secrets) is made once; the others start once it is ready.
When every worker has said ``READY=1`` the parent tells systemd ``READY=1``. A worker
that ends before that ends the parent too, with its exit status: a restart would fail
the same way. Later a worker that dies is restarted after :class:`rail.workers.restart.Backoff`.
A worker that changed what the others must re-read (the console rotated DKIM keys) says
``RELOAD=1``, and the others get a SIGHUP.

Signals: SIGHUP and SIGUSR1 go to every worker (SIGUSR1 still rotates the parent's log
file, which the workers' lines go to); SIGTERM and SIGINT stop the parent, which sends
SIGTERM to every worker, closes its own copies of the sockets (new connections now go to
workers still draining, or are refused once none listens), and waits for them: each
drains and finishes as a single Rail does. A worker still running ``stop_timeout``
seconds later is killed.

Decisions (descriptors, restarts) are in :mod:`rail.workers.plan` and
:mod:`rail.workers.restart`; this module only does what they say.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.listener import ListenError
from rail.workers.child import stop_once
from rail.workers.plan import (
    ENVIRONMENT,
    STATUS_FD,
    Balance,
    WorkerSpec,
    descriptor_plan,
    encode,
)
from rail.workers.restart import Backoff, GiveUp, Restart, exit_decision
from rail.workers.sockets import ListeningSockets, close_all

__all__ = ["Supervisor"]

_log = Logger()

_LONGEST_LINE = 64 * 1024
"""A worker's output without a newline for this long is passed on as a line."""

LogRoute = Mapping[int, Any]
"""The workers' descriptors 1 and 2: a parent descriptor they share (stdout, stderr), or
``"r"`` for a pipe whose lines the parent relays into its own log."""


class _Worker(ProcessProtocol):
    """One worker process: its status lines, its log lines, its end."""

    def __init__(self, supervisor: Supervisor, index: int, started_at: float) -> None:
        self.supervisor = supervisor
        self.index = index
        self.started_at = started_at
        self.ready = False
        self.ended = False
        self.pid: int | None = None
        self._partial: dict[int, bytes] = {}

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines = (self._partial.pop(childFD, b"") + data).split(b"\n")
        if len(lines[-1]) > _LONGEST_LINE:  # written out as it is rather than held
            lines.append(b"")
        if lines[-1]:
            self._partial[childFD] = lines[-1]
        for line in lines[:-1]:
            if childFD == STATUS_FD:
                self.supervisor.status(self, line.decode("ascii", "replace").strip())
            else:
                self.supervisor.relay(line + b"\n")

    def signal(self, signum: int) -> None:
        if self.ended or self.transport is None:
            return
        try:
            self.transport.signalProcess(signum)
        except ProcessExitedAlready:
            pass

    def processEnded(self, reason: Failure) -> None:
        self.ended = True
        for rest in self._partial.values():
            self.supervisor.relay(rest + b"\n")
        self._partial.clear()
        self.supervisor.ended(self, reason)


class Supervisor(Service):
    """See the module docstring.

    ``bind()`` binds the listening sockets (raising ListenError); ``argv`` is the command
    of a worker (``twistd ... rail --config F``) and ``environ`` its environment, to which
    ``RAIL_WORKER`` is added; ``logs`` routes the workers' output (``relay`` receives
    the lines when it is a pipe); ``notify`` sends a state to systemd; ``give_up(code)``
    is called when a worker failed at start (the parent should exit with ``code``);
    ``signals`` (tests: False) installs the handlers of SIGHUP, SIGUSR1, SIGTERM, SIGINT.
    """

    name = "workers"

    def __init__(
        self,
        *,
        reactor: Any,
        count: int,
        balance: Balance,
        bind: Callable[[], ListeningSockets],
        argv: Sequence[str],
        environ: Mapping[str, str],
        logs: LogRoute,
        relay: Callable[[bytes], None],
        notify: Callable[[str], None],
        give_up: Callable[[int], None],
        stop_timeout: float,
        backoff: Backoff | None = None,
        signals: bool = True,
    ) -> None:
        self._reactor = reactor
        self.count = count
        self.balance = balance
        self._bind = bind
        self._argv = list(argv)
        self._environ = {k: v for k, v in environ.items() if k != "NOTIFY_SOCKET"}
        self._logs = logs
        self.relay = relay
        self._notify = notify
        self._give_up = give_up
        self._stop_timeout = stop_timeout
        self._backoff = backoff or Backoff()
        self._signals = signals
        self.sockets: ListeningSockets = {}
        self.peers = ""
        self.workers: dict[int, _Worker] = {}
        self.deaths: dict[int, int] = {}
        self._restarts: dict[int, IDelayedCall] = {}
        self.started = False
        """Every worker has been ready at least once."""
        self._stopping = False
        self._all_ended: defer.Deferred[None] | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if not self.sockets:
            try:
                self.sockets = self._bind()
            except ListenError as e:
                sys.stderr.write(f"rail: {e}\n")
                raise SystemExit(1) from None

    def startService(self) -> None:
        super().startService()
        if not self.sockets:
            self.privilegedStartService()
        if self._signals:
            self._install_signals()
        # Where the workers serve their metrics to each other: private to this run.
        self.peers = tempfile.mkdtemp(prefix="rail-workers-")
        _log.info(
            "starting {count} worker processes ({balance} listening sockets)",
            count=self.count,
            balance=self.balance,
        )
        self._spawn(0)

    # Starting and ending

    def _spawn(self, index: int) -> None:
        self._restarts.pop(index, None)
        plan = descriptor_plan(self.sockets, index, self.balance)
        child_fds: dict[int, Any] = {0: "w", 1: self._logs[1], 2: self._logs[2], STATUS_FD: "r"}
        for fd, (name, copy) in plan.items():
            child_fds[fd] = self.sockets[name][copy].fileno()
        spec = WorkerSpec(
            index=index,
            count=self.count,
            fds={n: fd for fd, (n, _) in plan.items()},
            peers=self.peers,
        )
        worker = _Worker(self, index, self._reactor.seconds())
        self.workers[index] = worker
        process = self._reactor.spawnProcess(
            worker,
            self._argv[0],
            self._argv,
            env={**self._environ, ENVIRONMENT: encode(spec)},
            childFDs=child_fds,
        )
        worker.pid = process.pid
        _log.info("worker {index} started (pid {pid})", index=index, pid=worker.pid)

    def status(self, worker: _Worker, state: str) -> None:
        if state == "RELOAD=1":  # it changed what every worker reads at a reload
            others = [w for w in self.workers.values() if w is not worker and not w.ended]
            _log.info(
                "worker {index} asked for a reload: SIGHUP passed to {count} workers",
                index=worker.index,
                count=len(others),
            )
            for other in others:
                other.signal(signal.SIGHUP)
            return
        if state != "READY=1" or worker.ready or self._stopping:
            return
        worker.ready = True
        if self.started:
            _log.info("worker {index} (pid {pid}) ready again", index=worker.index, pid=worker.pid)
            return
        if worker.index == 0 and self.count > 1:
            for index in range(1, self.count):  # worker 0 made what a first start makes
                self._spawn(index)
        if all(w.ready for w in self.workers.values()) and len(self.workers) == self.count:
            self.started = True
            _log.info("all {count} workers ready", count=self.count)
            self._notify("READY=1")

    def ended(self, worker: _Worker, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        signum = getattr(reason.value, "signal", None)
        how = f"signal {signal.Signals(signum).name}" if signum else f"exit status {code}"
        ran_for = self._reactor.seconds() - worker.started_at
        decision = exit_decision(
            stopping=self._stopping,
            started=self.started,
            deaths=self.deaths.get(worker.index, 0),
            ran_for=ran_for,
            exit_code=code,
            backoff=self._backoff,
        )
        if decision is None:
            _log.info(
                "worker {index} (pid {pid}) ended: {how}",
                index=worker.index,
                pid=worker.pid,
                how=how,
            )
            self._check_all_ended()
        elif isinstance(decision, Restart):
            self.deaths[worker.index] = decision.deaths
            _log.error(
                "worker {index} (pid {pid}) died after {ran_for:.0f}s ({how});"
                " restarting it in {delay:.0f}s ({deaths} in a row)",
                index=worker.index,
                pid=worker.pid,
                ran_for=ran_for,
                how=how,
                delay=decision.delay,
                deaths=decision.deaths,
            )
            self._restarts[worker.index] = self._reactor.callLater(
                decision.delay, self._spawn, worker.index
            )
        elif isinstance(decision, GiveUp):
            _log.error(
                "worker {index} (pid {pid}) ended before Rail was ready ({how}); stopping",
                index=worker.index,
                pid=worker.pid,
                how=how,
            )
            self._give_up(decision.code)

    def _check_all_ended(self) -> None:
        if self._all_ended is not None and all(w.ended for w in self.workers.values()):
            done, self._all_ended = self._all_ended, None
            done.callback(None)

    # Signals

    def _install_signals(self) -> None:
        reactor = self._reactor
        # After twistd's own handlers, which would fail on a second SIGTERM (from systemd
        # and a terminal both, say) while the workers are stopping.
        reactor.callWhenRunning(_stop_once, reactor)
        signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(self.forward, signal.SIGHUP))
        previous = signal.getsignal(signal.SIGUSR1)

        def usr1(signum: int, frame: Any) -> None:
            if callable(previous):
                previous(signum, frame)  # the parent's own log file rotates
            reactor.callFromThread(self.forward, signal.SIGUSR1)

        signal.signal(signal.SIGUSR1, usr1)

    def forward(self, signum: int) -> None:
        """Send ``signum`` to every live worker."""
        live = [w for w in self.workers.values() if not w.ended]
        name = signal.Signals(signum).name
        _log.info("{name}: passed to {count} workers", name=name, count=len(live))
        for worker in live:
            worker.signal(signum)

    # Stopping

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        self._stopping = True
        self._notify("STOPPING=1")
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        self._all_ended = defer.Deferred()
        done = self._all_ended
        self.forward(signal.SIGTERM)
        # The workers hold their own copies: new connections go to them while they drain.
        close_all(self.sockets)
        self.sockets = {}
        timer = self._reactor.callLater(self._stop_timeout, self._kill_stragglers)
        self._check_all_ended()

        def stopped(result: None) -> None:
            if timer.active():
                timer.cancel()
            shutil.rmtree(self.peers, ignore_errors=True)
            _log.info("all workers stopped")
            return result

        return done.addCallback(stopped)

    def _kill_stragglers(self) -> None:
        for worker in self.workers.values():
            if not worker.ended:
                _log.error(
                    "worker {index} (pid {pid}) still running {timeout:.0f}s after SIGTERM;"
                    " killing it",
                    index=worker.index,
                    pid=worker.pid,
                    timeout=self._stop_timeout,
                )
                worker.signal(signal.SIGKILL)


def _stop_once(reactor: Any) -> None:
    handler = stop_once(reactor)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
