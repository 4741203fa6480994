"""``twistd -ny "$(rail tac-path)"``: the same service tree as ``twistd rail``, as a .tac file.

The configuration path comes from ``$RAIL_CONFIG`` (default ``rail.yaml`` in the working
directory). Installed with the package, so ``rail tac-path`` finds it after ``pip install``.
"""

import os

from twisted.application.service import Application

from rail.tap import Options, makeService

_options = Options()
_options.parseOptions(["--config", os.environ.get("RAIL_CONFIG", "rail.yaml")])
application = Application("rail")
makeService(_options).setServiceParent(application)
