"""Rail's configuration: ``rail.yaml`` read strictly into frozen attrs values.

Pure layer: no Twisted imports. Submodules: ``units`` (durations, sizes), ``listen``
(endpoint descriptions), ``schema`` (the classes), ``readers`` and ``parse`` (checks),
``load`` (file and YAML), ``render`` (the development config), ``errors`` (problems).
"""

from rail.config.errors import ConfigError, Problem
from rail.config.load import load_config
from rail.config.parse import parse_config
from rail.config.schema import Config

__all__ = ["Config", "ConfigError", "Problem", "load_config", "parse_config"]
