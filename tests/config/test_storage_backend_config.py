"""Configuration of the store's backend: ``storage.backend`` and ``storage.dsn``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rail.config import ConfigError, parse_config
from rail.config.schema import Storage

BASE = Path("/etc/rail")


def _parse(storage: dict[str, Any]) -> Storage:
    data = {"hostname": "mail.example.com", "tls": {"self_signed": True}, "storage": storage}
    return parse_config(data, BASE).storage


def _problems(storage: dict[str, Any]) -> list[str]:
    try:
        _parse(storage)
    except ConfigError as e:
        return [str(problem) for problem in e.problems]
    raise AssertionError(f"{storage!r} was accepted")


class StorageBackendConfigTests(SynchronousTestCase):
    def test_default_is_sqlite(self) -> None:
        """Unset, the store is the embedded SQLite one and no DSN is needed."""
        storage = _parse({})
        self.assertEqual((storage.backend, storage.dsn), ("sqlite", None))

    def test_postgresql_with_dsn(self) -> None:
        """PostgreSQL takes a libpq connection string, in key=value or URI form."""
        for dsn in ("host=db.example dbname=rail user=rail", "postgresql://rail@db/rail"):
            storage = _parse({"backend": "postgresql", "dsn": dsn})
            self.assertEqual((storage.backend, storage.dsn), ("postgresql", dsn))

    def test_postgresql_needs_a_dsn(self) -> None:
        """PostgreSQL without a DSN is refused at the section's path."""
        self.assertEqual(
            _problems({"backend": "postgresql"}),
            ["storage: dsn is required with backend: postgresql"],
        )

    def test_dsn_without_postgresql(self) -> None:
        """A DSN with the SQLite backend is refused rather than silently ignored."""
        self.assertEqual(
            _problems({"dsn": "dbname=rail"}),
            ["storage: dsn is only used with backend: postgresql"],
        )

    def test_bad_values(self) -> None:
        """An unknown backend and a malformed DSN are refused at their own paths."""
        (problem,) = _problems({"backend": "mysql"})
        self.assertTrue(problem.startswith("storage.backend: expected one of"), problem)
        (problem,) = _problems({"backend": "postgresql", "dsn": "host=db dbname"})
        self.assertTrue(problem.startswith("storage.dsn: not a libpq connection string"), problem)
