"""``twistd -ny rail.tac``: the same service tree, config path from $RAIL_CONFIG."""

import os

from twisted.application.service import Application

from rail.tap import Options, makeService

_options = Options()
_options.parseOptions(["--config", os.environ.get("RAIL_CONFIG", "rail.yaml")])
application = Application("rail")
makeService(_options).setServiceParent(application)
