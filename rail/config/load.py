"""Reading ``rail.yaml`` from disk: the file and YAML layer in front of ``parse_config``.

YAML is parsed as ``yaml.safe_load`` would (no Python object tags), with one difference:
a key given twice in a mapping is an error. PyYAML silently keeps the last one, so the value
the operator reads at the top of a file could be overridden unnoticed further down.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import yaml

from rail.config.errors import ConfigError, Problem, index_path, key_path
from rail.config.parse import parse_config
from rail.config.schema import Config

__all__ = ["load_config"]


def load_config(path: str | Path) -> Config:
    """Read, parse and check the configuration file at ``path``.

    Relative paths in the file are taken relative to the file's directory. Raises
    :class:`ConfigError` listing every problem: the file cannot be read, is not YAML, repeats
    a key, or does not describe a valid configuration.
    """
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError([Problem(name, e.strerror or str(e))]) from None
    document, duplicates = _load_yaml(name, data)
    problems = list(duplicates)
    try:
        config = parse_config(document, Path(path).absolute().parent)
    except ConfigError as e:
        problems.extend(e.problems)
    if problems:
        raise ConfigError(problems)
    return config


class _StrictLoader(yaml.SafeLoader):
    """A ``SafeLoader`` that also reports keys given twice in one mapping."""

    def load_checked(self) -> tuple[object, list[Problem]]:
        """The single document in the stream, and one problem per repeated key."""
        node = self.get_single_node()
        if node is None:
            raise ConfigError([Problem(self.name, "empty file")])
        duplicates = list(_duplicate_keys(node, "", set()))
        return self.construct_document(node), duplicates


def _load_yaml(name: str, data: bytes) -> tuple[object, list[Problem]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            [Problem(name, f"not UTF-8 text: {e.reason} at byte {e.start}")]
        ) from None
    try:
        loader = _StrictLoader(text)
        loader.name = name  # so problems about the whole file name the file
        try:
            return loader.load_checked()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        raise ConfigError([_syntax_problem(name, e)]) from None
    except yaml.reader.ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        column = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        message = f"unacceptable character #x{e.character:04x}: {e.reason}"
        raise ConfigError([Problem(f"{name}:{line}:{column}", message)]) from None
    except yaml.YAMLError as e:
        raise ConfigError([Problem(name, str(e))]) from None
    except ValueError as e:
        # A well-formed but impossible value, such as the date 2024-02-30.
        raise ConfigError([Problem(name, f"invalid value: {e}")]) from None


def _syntax_problem(name: str, error: yaml.MarkedYAMLError) -> Problem:
    """``file:line:column: problem``, with PyYAML's context when it names where it started."""
    mark = error.problem_mark or error.context_mark
    where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
    message = error.problem or error.context or "invalid YAML"
    if error.problem and error.context and error.context_mark:
        message += f" ({error.context} on line {error.context_mark.line + 1})"
    return Problem(where, message)


def _duplicate_keys(node: yaml.Node, path: str, seen: set[int]) -> Iterator[Problem]:
    """Problems for every key given twice in a mapping under ``node`` (at ``path``).

    Works on the composed nodes because constructed mappings have already lost the repeats.
    ``seen`` guards against walking an anchored node twice, or forever if it contains itself.
    """
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            here = key_path(path, str(key.value))
            line = key.start_mark.line + 1
            identity = (key.tag, key.value)
            if identity in first_line:
                yield Problem(
                    here,
                    f"duplicate key on line {line} (first given on line {first_line[identity]})",
                )
            else:
                first_line[identity] = line
            yield from _duplicate_keys(value, here, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, index_path(path, index), seen)
