"""Configuration of retention: ``storage.retention.body`` and ``storage.retention.record``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rail.config import ConfigError, parse_config
from rail.config.schema import Retention

BASE = Path("/etc/rail")
_DAY = 86400.0


def _parse(retention: dict[str, Any]) -> Retention:
    data = {
        "hostname": "mail.example.com",
        "tls": {"self_signed": True},
        "storage": {"retention": retention},
    }
    return parse_config(data, BASE).storage.retention


def _problems(retention: dict[str, Any]) -> list[str]:
    try:
        _parse(retention)
    except ConfigError as e:
        return [str(problem) for problem in e.problems]
    raise AssertionError(f"{retention!r} was accepted")


class RetentionConfigTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """Unset, bodies are kept 7 days and records 30 days after a message finishes."""
        self.assertEqual(_parse({}), Retention(body=7 * _DAY, record=30 * _DAY))

    def test_every_key(self) -> None:
        """Both keys are durations."""
        self.assertEqual(
            _parse({"body": "12h", "record": "90d"}), Retention(body=12 * 3600.0, record=90 * _DAY)
        )

    def test_record_before_body_is_refused(self) -> None:
        """A record horizon shorter than the body horizon is refused at the section's path,
        counting an unset key at its default."""
        self.assertEqual(
            _problems({"body": "10d", "record": "2d"}),
            [
                "storage.retention: record must be at least body: the status outlives the"
                " message, not the reverse"
            ],
        )
        self.assertEqual(len(_problems({"record": "2d"})), 1)

    def test_bounds(self) -> None:
        """Durations under an hour are refused with the path of the key."""
        (problem,) = _problems({"body": "10m"})
        self.assertTrue(problem.startswith("storage.retention.body: "), problem)
