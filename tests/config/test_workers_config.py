"""Configuration of worker processes: ``workers`` and ``worker_sockets``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rail.config import ConfigError, parse_config
from rail.config.schema import Config


def _parse(**keys: Any) -> Config:
    data = {"hostname": "mail.example.com", "tls": {"self_signed": True}, **keys}
    return parse_config(data, Path("/etc/rail"))


def _problems(**keys: Any) -> list[str]:
    try:
        _parse(**keys)
    except ConfigError as e:
        return [str(problem) for problem in e.problems]
    raise AssertionError(f"{keys!r} was accepted")


class WorkersConfigTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """Unset: one process, and reuseport sockets should there be more."""
        config = _parse()
        self.assertEqual((config.workers, config.worker_sockets), (1, "reuseport"))

    def test_values(self) -> None:
        """A number from 1 to 256, or auto; shared or reuseport sockets."""
        postgresql = {"backend": "postgresql", "dsn": "dbname=rail"}
        self.assertEqual(_parse(workers=4, storage=postgresql).workers, 4)
        self.assertEqual(_parse(workers="auto").workers, "auto")
        self.assertEqual(_parse(worker_sockets="shared").worker_sockets, "shared")

    def test_bad_values(self) -> None:
        """Zero, too many, other words and booleans are refused at the key's path."""
        for value in (0, 257, "two", True, 1.5):
            (problem,) = _problems(workers=value)
            self.assertTrue(problem.startswith("workers: expected"), problem)
        (problem,) = _problems(worker_sockets="fork")
        self.assertTrue(problem.startswith("worker_sockets: expected one of"), problem)

    def test_sqlite_refused(self) -> None:
        """More than one worker on SQLite is a problem of ``workers`` (so ``rail
        config-check`` says it); ``auto`` is counted at start, not here."""
        self.assertEqual(
            _problems(workers=2),
            [
                "workers: 2 worker processes need storage.backend: postgresql (SQLite's"
                " queue is for one process); set workers: 1 or use PostgreSQL"
            ],
        )
        self.assertEqual(_parse(workers="auto").workers, "auto")
        dsn = "host=db.example dbname=rail"
        config = _parse(workers=2, storage={"backend": "postgresql", "dsn": dsn})
        self.assertEqual(config.workers, 2)
