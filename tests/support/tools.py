"""Skipping a test for a missing tool, except in CI.

A developer's machine may lack Postfix, pebble, dig or root, and the tests that need them
skip there. CI (``CI=true``, which ``.ci/run`` sets) runs the README's test command, which
provisions everything the tests need; a tool missing there is a provisioning defect, so the
test fails instead of hiding it behind a skip.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

from twisted.trial.unittest import FailTest, SkipTest

__all__ = ["in_ci", "missing", "need_root", "need_tool"]


def in_ci() -> bool:
    """Whether the tests run in CI, where nothing they need may be missing."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(reason: str) -> NoReturn:
    """Skip the test because ``reason`` (a missing tool); fail it under ``CI=true``."""
    if in_ci():
        raise FailTest(f"{reason}, and CI=true: the test command must provision it")
    raise SkipTest(reason)


def need_tool(name: str, package: str) -> str:
    """The path of the command ``name``, else :func:`missing` naming its Debian package."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (Debian package {package})")
    return path


def need_root(why: str) -> None:
    """:func:`missing` unless running as root, which ``why`` needs."""
    if os.geteuid() != 0:
        missing(f"{why} needs root")
