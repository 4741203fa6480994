"""Configuration of the log format (``logging``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rail.config import ConfigError, parse_config
from rail.config.schema import Logging

BASE = Path("/etc/rail")


def _data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"hostname": "mail.example.com", "tls": {"self_signed": True}}
    data.update(changes)
    return data


def _problems(data: dict[str, Any]) -> list[str]:
    try:
        parse_config(data, BASE)
    except ConfigError as e:
        return [str(problem) for problem in e.problems]
    raise AssertionError(f"{data!r} was accepted")


class LoggingConfigTests(SynchronousTestCase):
    def test_default_is_text(self) -> None:
        """Without a ``logging`` section, or with an empty one, the format is ``text``."""
        self.assertEqual(parse_config(_data(), BASE).logging, Logging(format="text"))
        self.assertEqual(parse_config(_data(logging={}), BASE).logging, Logging(format="text"))

    def test_json(self) -> None:
        """``logging.format: json`` is read as such."""
        config = parse_config(_data(logging={"format": "json"}), BASE)
        self.assertEqual(config.logging.format, "json")

    def test_unknown_format_and_key(self) -> None:
        """Any other format, and any other key, is a path-qualified error."""
        problems = _problems(_data(logging={"format": "xml", "level": "debug"}))
        self.assertEqual(len(problems), 2)
        self.assertTrue(problems[0].startswith("logging.format: "), problems)
        self.assertIn("xml", problems[0])
        self.assertTrue(problems[1].startswith("logging.level: "), problems)
