"""Wiring of ``twistd rail --workers N``'s parent: the command its workers run, where
their log lines go, and the :class:`rail.workers.supervisor.Supervisor` that runs them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rail.config import Config
from rail.notify import notify
from rail.workers.plan import Balance
from rail.workers.sockets import bind_all
from rail.workers.supervisor import LogRoute, Supervisor

__all__ = ["STOP_MARGIN", "build_supervisor", "log_route", "worker_argv"]

STOP_MARGIN = 30.0
"""Seconds a worker may take to stop beyond ``shutdown.drain_delay`` and
``shutdown.grace_period`` (closing the store, the last log lines) before it is killed."""

_TWISTD = "from twisted.scripts.twistd import run; run()"


def log_route(twistd: Mapping[str, Any]) -> LogRoute:
    """Where workers' output goes, given the parent's twistd options: the parent's own
    standard output when it logs there (``-n``, systemd's journal) and to syslog (each
    worker logs to syslog itself); into the parent's log file otherwise (relayed line by
    line: one file, rotated by one process)."""
    logfile = twistd.get("logfile") or ""
    if twistd.get("syslog") or (twistd.get("nodaemon") and logfile in ("", "-")):
        return {1: 1, 2: 2}
    return {1: "r", 2: "r"}


def worker_argv(config_path: Path, twistd: Mapping[str, Any]) -> list[str]:
    """The command of a worker: this Python, twistd in the foreground without a pid file,
    logging to standard output (or syslog, as the parent does), ``rail --config``."""
    argv = [sys.executable, "-c", _TWISTD, "--nodaemon", "--pidfile="]
    if twistd.get("syslog"):
        argv += ["--syslog", "--prefix", str(twistd.get("prefix") or "rail")]
    else:
        argv += ["--logfile=-"]
    return [*argv, "rail", "--config", str(config_path.resolve())]


def build_supervisor(
    config: Config,
    reactor: Any,
    *,
    count: int,
    balance: Balance,
    config_path: Path,
    twistd: Mapping[str, Any],
    relay: Callable[[bytes], None],
    give_up: Callable[[int], None],
) -> Supervisor:
    """The parent's only service: see :mod:`rail.workers.supervisor`."""

    def tell_systemd(state: str) -> None:
        problem = notify(state)
        if problem is not None:
            sys.stderr.write(f"rail: {problem}\n")

    shutdown = config.shutdown
    return Supervisor(
        reactor=reactor,
        count=count,
        balance=balance,
        bind=lambda: bind_all(config, balance, count),
        argv=worker_argv(config_path, twistd),
        environ=os.environ,
        logs=log_route(twistd),
        relay=relay,
        notify=tell_systemd,
        give_up=give_up,
        stop_timeout=shutdown.drain_delay + shutdown.grace_period + STOP_MARGIN,
    )
