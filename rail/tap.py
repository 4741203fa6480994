"""``twistd rail``: options and the service maker.

The only module that imports the global reactor. Configuration and TLS material are
loaded here, before any port is bound; a bad config exits 2 and a bad CA, key or
certificate exits 1, each problem on one line of stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from rail.config import ConfigError, load_config
from rail.dkim.keys import DKIMKeyError
from rail.logtext import twistd_observer
from rail.pki.files import PKIError
from rail.store.model import StoreUnavailableError

__all__ = ["Options", "makeService", "twistd_logger"]


class Options(usage.Options):
    synopsis = "--config FILE"
    optParameters = [["config", "c", None, "Rail configuration file (YAML)."]]

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config FILE is required")
        if self.parent is not None and not self.parent.get("logger"):
            # twistd resolves this name after we return, then calls it to start logging.
            _twistd_options[:] = [self.parent]
            self.parent["logger"] = f"{__name__}.twistd_logger"


_twistd_options: list[Any] = []


def twistd_logger() -> Any:
    """twistd's own choice of log output (``-l``, ``-n``, ``--syslog``), Rail's line formatter.

    twistd calls its ``logger`` factory with no arguments, so the options it parsed are kept
    here by ``Options.postOptions`` (one twistd per process).
    """
    return twistd_observer(_twistd_options[0], _call_from_thread)()


def _call_from_thread(f: Callable[[], object]) -> None:
    from twisted.internet import reactor

    reactor.callFromThread(f)  # type: ignore[attr-defined]


def makeService(options: Any) -> IService:
    from twisted.internet import reactor

    from rail.malloc import return_freed_buffers
    from rail.service import build_service

    # Message buffers are large and short-lived: give their memory back when freed.
    return_freed_buffers()
    try:
        config = load_config(options["config"])
    except ConfigError as e:
        for problem in e.problems:
            sys.stderr.write(f"rail: {problem}\n")
        raise SystemExit(2) from None
    try:
        return build_service(config, reactor, config_path=Path(options["config"]))
    except (PKIError, StoreUnavailableError, DKIMKeyError) as e:
        sys.stderr.write(f"rail: {e}\n")
        raise SystemExit(1) from None
