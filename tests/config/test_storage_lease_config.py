"""Configuration of the leases of a shared store: ``storage.lease``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rail.config import ConfigError, parse_config
from rail.config.schema import Storage

BASE = Path("/etc/rail")
_PG = {"backend": "postgresql", "dsn": "dbname=rail"}


def _parse(storage: dict[str, Any]) -> Storage:
    data = {"hostname": "mail.example.com", "tls": {"self_signed": True}, "storage": storage}
    return parse_config(data, BASE).storage


def _problems(storage: dict[str, Any]) -> list[str]:
    try:
        _parse(storage)
    except ConfigError as e:
        return [str(problem) for problem in e.problems]
    raise AssertionError(f"{storage!r} was accepted")


class StorageLeaseConfigTests(SynchronousTestCase):
    def test_default(self) -> None:
        """Unset, a lease lasts 60 seconds, whatever the backend."""
        self.assertEqual(_parse({}).lease, 60.0)
        self.assertEqual(_parse(dict(_PG)).lease, 60.0)

    def test_postgresql_takes_a_duration(self) -> None:
        """With PostgreSQL the lease is a duration."""
        self.assertEqual(_parse({**_PG, "lease": "2m"}).lease, 120.0)
        self.assertEqual(_parse({**_PG, "lease": "15s"}).lease, 15.0)

    def test_bounds(self) -> None:
        """Shorter than 15 s (renewals every 5 s) or longer than an hour is refused at the
        key's path."""
        for value in ("14s", "2h"):
            (problem,) = _problems({**_PG, "lease": value})
            self.assertTrue(problem.startswith("storage.lease: "), problem)

    def test_lease_without_postgresql(self) -> None:
        """A lease with the SQLite backend is refused rather than silently ignored."""
        self.assertEqual(
            _problems({"lease": "60s"}),
            [
                "storage: lease is only used with backend: postgresql (SQLite's claims take no"
                " leases)"
            ],
        )
