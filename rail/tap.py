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
from rail.delivery.transport import TransportError
from rail.dkim.keys import DKIMKeyError
from rail.forward.secret import SRSSecretError
from rail.logjson import json_line
from rail.logtext import classic_line, twistd_observer
from rail.ownership import HandOver, target_ids
from rail.pki.files import PKIError
from rail.store.model import StoreUnavailableError
from rail.version import rail_version

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

    def opt_version(self) -> None:
        """Print Rail's version and exit."""
        from twisted import __version__ as twisted_version

        print(f"rail {rail_version()} (Twisted {twisted_version})")
        raise SystemExit(0)


_twistd_options: list[Any] = []
_log_format = ["text"]


def twistd_logger() -> Any:
    """twistd's own choice of log output (``-l``, ``-n``, ``--syslog``), Rail's line formatter.

    twistd calls its ``logger`` factory with no arguments, so the options it parsed are kept
    here by ``Options.postOptions`` (one twistd per process); it calls it after
    ``makeService``, which keeps the configuration's ``logging.format`` here.
    """
    line = json_line if _log_format[0] == "json" else classic_line
    return twistd_observer(_twistd_options[0], _call_from_thread, line, _schedule)()


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
    _log_format[0] = config.logging.format
    try:
        root = build_service(config, reactor, config_path=Path(options["config"]))
    except ConfigError as e:  # forwarding loops need the registry: known only here
        for problem in e.problems:
            sys.stderr.write(f"rail: {problem}\n")
        raise SystemExit(2) from None
    except (PKIError, StoreUnavailableError, DKIMKeyError, SRSSecretError, TransportError) as e:
        sys.stderr.write(f"rail: {e}\n")
        raise SystemExit(1) from None
    # Started as root with --uid/--gid: what the start creates in data_dir as root goes to
    # that user before twistd drops to it (see rail.ownership).
    twistd = getattr(options, "parent", None)
    ids = target_ids(twistd.get("uid"), twistd.get("gid")) if twistd is not None else None
    if ids is not None:
        HandOver(config.data_dir, *ids).setServiceParent(root)
    return root
