"""``twistd rail``: options and the service maker.

The only module that imports the global reactor. Configuration and TLS material are
loaded here, before any port is bound; a bad config exits 2 and a bad CA, key or
certificate exits 1, each problem on one line of stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from rail.config import ConfigError, load_config
from rail.dkim.keys import DKIMKeyError
from rail.pki.files import PKIError
from rail.store.model import StoreUnavailableError

__all__ = ["Options", "makeService"]


class Options(usage.Options):
    synopsis = "--config FILE"
    optParameters = [["config", "c", None, "Rail configuration file (YAML)."]]

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config FILE is required")


def makeService(options: Any) -> IService:
    from twisted.internet import reactor

    from rail.service import build_service

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
