"""Rail's version, as the installed package's metadata says (``rail --version``).

One source of truth: setup.cfg's ``version``, which pip records in the distribution's
metadata. A checkout imported without being installed has no metadata and says so.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["rail_version"]

UNKNOWN = "0+unknown"


def rail_version() -> str:
    """The version of the installed ``rail`` distribution, or ``0+unknown`` without one."""
    try:
        return version("rail")
    except PackageNotFoundError:
        return UNKNOWN
