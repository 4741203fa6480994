"""How configuration problems are described to the operator.

Every check in ``rail.config`` reports a :class:`Problem` naming the offending item by its
dotted path (``listen.https``, ``local_domains[2]``), so that ``rail config-check`` can print
all of them at once, one per line, instead of making the operator fix one error per run.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

__all__ = ["ROOT", "ConfigError", "Problem", "index_path", "key_path"]

ROOT = "(config)"
"""The path shown for a problem with the document as a whole (it is not a mapping, or empty)."""


@attrs.frozen
class Problem:
    """One thing wrong with a configuration, located by its path in the document."""

    path: str
    """Dotted path with list indexes (``pki.client_validity``, ``local_domains[2]``), the
    file name for a file that cannot be read, or ``file:line:column`` for YAML syntax."""
    message: str
    """What is wrong, phrased for the operator who has to fix it."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists every problem found, in order.

    Rail refuses to start on any problem (fail closed), so the whole list is gathered before
    this is raised.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(*self.problems)

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


def key_path(parent: str, key: str) -> str:
    """The path of ``key`` inside the mapping at ``parent`` (``""`` is the document root)."""
    return f"{parent}.{key}" if parent else key


def index_path(parent: str, index: int) -> str:
    """The path of item ``index`` inside the list at ``parent``."""
    return f"{parent or ROOT}[{index}]"
