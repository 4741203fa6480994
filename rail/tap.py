"""``twistd rail``: options and the service maker.

The only module that imports the global reactor. Configuration and TLS material are
loaded here, before any port is bound; a bad config exits 2 and a bad CA, key or
certificate exits 1, each problem on one line of stderr.

With ``--workers N`` (or ``workers:``) above 1 the process is the parent of N workers
(:mod:`rail.workers`): it binds and supervises. Each worker is a ``twistd rail`` of its
own, told so by ``$RAIL_WORKER``, which runs the whole tree on the parent's sockets.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from rail.config import ConfigError, load_config
from rail.config.workers import sqlite_refusal
from rail.logjson import json_line
from rail.logtext import BufferedOutput, classic_line, tagged, twistd_observer
from rail.ownership import HandOver, target_ids
from rail.version import rail_version
from rail.workers.plan import AUTO, ENVIRONMENT, WorkerSpec, decode, worker_count

__all__ = ["Options", "makeService", "twistd_logger"]


class Options(usage.Options):
    synopsis = "--config FILE [--workers N|auto]"
    optParameters = [
        ["config", "c", None, "Rail configuration file (YAML)."],
        [
            "workers",
            None,
            None,
            "Rail processes serving this host: a number, or auto (one per core);"
            " default: the configuration's workers (1).",
        ],
    ]

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config FILE is required")
        workers = self["workers"]
        if workers is not None and workers != AUTO:
            if not workers.isdigit() or not 1 <= int(workers) <= 256:
                raise usage.UsageError(f"--workers: expected 1 to 256 or auto, got {workers!r}")
            self["workers"] = int(workers)
        if self.parent is not None and not self.parent.get("logger"):
            # twistd resolves this name after we return, then calls it to start logging.
            _twistd_options[:] = [self.parent]
            self.parent["logger"] = f"{__name__}.twistd_logger"

    def opt_version(self) -> None:
        """Print Rail's version and exit."""
        from twisted import __version__ as twisted_version

        print(f"rail {rail_version()} (Twisted {twisted_version})")
        raise SystemExit(0)


_twistd_options: list[Any] = []
_log_format = ["text"]
_worker: list[WorkerSpec] = []
"""This process's place when it is one of several workers (see rail.workers)."""
_outputs: list[BufferedOutput] = []
"""The log output twistd_logger made, which the workers' lines are relayed into."""
_exit_status = [0]


def twistd_logger() -> Any:
    """twistd's own choice of log output (``-l``, ``-n``, ``--syslog``), Rail's line formatter.

    twistd calls its ``logger`` factory with no arguments, so the options it parsed are kept
    here by ``Options.postOptions`` (one twistd per process); it calls it after
    ``makeService``, which keeps the configuration's ``logging.format`` here.
    """
    line: Callable[[Any], str | None] = json_line if _log_format[0] == "json" else classic_line
    if _worker:
        line = tagged(line, _worker[0].index)
    return twistd_observer(_twistd_options[0], _call_from_thread, line, _schedule, _outputs)()


def _call_from_thread(f: Callable[[], object]) -> None:
    from twisted.internet import reactor

    reactor.callFromThread(f)  # type: ignore[attr-defined]


def _schedule(delay: float, f: Callable[[], None]) -> None:
    """``f`` in ``delay`` seconds on the reactor thread, asked from any thread."""
    from twisted.internet import reactor
    from twisted.python.threadable import isInIOThread

    if isInIOThread():
        reactor.callLater(delay, f)
    else:
        reactor.callFromThread(reactor.callLater, delay, f)  # type: ignore[attr-defined]


def makeService(options: Any) -> IService:
    from rail.malloc import return_freed_buffers

    # Message buffers are large and short-lived: give their memory back when freed.
    return_freed_buffers()
    try:
        config = load_config(options["config"])
    except ConfigError as e:
        for problem in e.problems:
            sys.stderr.write(f"rail: {problem}\n")
        raise SystemExit(2) from None
    _log_format[0] = config.logging.format
    described = os.environ.get(ENVIRONMENT)
    if described is not None:
        return _worker_service(config, options, described)
    try:
        count = worker_count(
            options["workers"] if options.get("workers") is not None else config.workers,
            os.cpu_count(),
        )
    except ValueError as e:
        sys.stderr.write(f"rail: workers: {e}\n")
        raise SystemExit(2) from None
    refusal = sqlite_refusal(count, config.storage.backend)
    if refusal is not None:
        sys.stderr.write(f"rail: workers: {refusal}\n")
        raise SystemExit(2)
    if count > 1:
        return _supervisor(config, options, count)
    root = _build(config, options)
    # Started as root with --uid/--gid: what the start creates in data_dir as root goes to
    # that user before twistd drops to it (see rail.ownership).
    twistd = getattr(options, "parent", None)
    ids = target_ids(twistd.get("uid"), twistd.get("gid")) if twistd is not None else None
    if ids is not None:
        HandOver(config.data_dir, *ids).setServiceParent(root)
    return root


def _build(config: Any, options: Any, worker: WorkerSpec | None = None) -> Any:
    """The service tree of one Rail process; start-up errors exit as the module says."""
    from twisted.internet import reactor

    # Imported here: a parent of workers needs none of this (its memory stays small).
    from rail.delivery.transport import TransportError
    from rail.dkim.keys import DKIMKeyError
    from rail.forward.secret import SRSSecretError
    from rail.pki.files import PKIError
    from rail.service import build_service
    from rail.store.model import StoreUnavailableError

    try:
        return build_service(config, reactor, config_path=Path(options["config"]), worker=worker)
    except ConfigError as e:  # forwarding loops need the registry: known only here
        for problem in e.problems:
            sys.stderr.write(f"rail: {problem}\n")
        raise SystemExit(2) from None
    except (PKIError, StoreUnavailableError, DKIMKeyError, SRSSecretError, TransportError) as e:
        sys.stderr.write(f"rail: {e}\n")
        raise SystemExit(1) from None


def _supervisor(config: Any, options: Any, count: int) -> IService:
    """The parent of ``count`` workers (rail.workers.supervisor): it binds the listeners
    and supervises; the workers are ``twistd rail`` processes of their own."""
    from twisted.internet import reactor

    from rail.workers.service import build_supervisor

    def relay(line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        if _outputs:
            _outputs[0].write(text, wait=True)
        else:
            sys.stdout.write(text)

    def give_up(code: int) -> None:
        if _exit_status[0]:
            return  # a second worker failing while the first failure stops everything
        _exit_status[0] = code
        if reactor.running:
            reactor.stop()

    # twistd exits 0 once the reactor stops; a failed start must exit with its status.
    atexit.register(_exit_with_status)
    twistd = getattr(options, "parent", None)
    return build_supervisor(
        config,
        reactor,
        count=count,
        balance=config.worker_sockets,
        config_path=Path(options["config"]),
        twistd=twistd if twistd is not None else {},
        relay=relay,
        give_up=give_up,
    )


def _exit_with_status() -> None:
    """Registered first, so it runs last at exit: the logs are written by then."""
    if _exit_status[0]:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[0])


def _worker_service(config: Any, options: Any, described: str) -> IService:
    """One of several workers: the whole tree on the parent's sockets, status lines to
    the parent, SIGTERM and SIGINT obeyed once, SIGUSR1 writing out batched log lines."""
    from twisted.internet import reactor

    from rail.workers.child import ParentChannel, stop_once

    try:
        spec = decode(described)
    except ValueError as e:
        sys.stderr.write(f"rail: {e}\n")
        raise SystemExit(2) from None
    _worker[:] = [spec]
    root = _build(config, options, spec)
    stop = stop_once(reactor)
    channel = ParentChannel.open(reactor, parent_gone=stop)

    def tell_parent(state: str) -> None:
        channel.send(state)

    root.notifier = tell_parent

    def flush_logs() -> None:
        for output in _outputs:
            output.flush()

    def install_signals() -> None:  # after twistd's own, which would stop twice
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGUSR1, lambda *_: _call_from_thread(flush_logs))

    reactor.callWhenRunning(install_signals)
    return root
