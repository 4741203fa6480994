"""TLS-RPT outcome counters in the SQLite queue (schema step 11).

One row per UTC day, policy domain, policy (type and text), result type, MX host and
receiving address, with a counter: the table grows with the variety of outcomes, never
with the number of sessions. Successes are counted without host and address (a report
only totals them), so a day's rows are bounded by the policies seen and the failing
hosts. The counts reach the table in batches (:mod:`rail.tlsrpt.sink` adds them through
the writer thread); the daily report reads a finished day's rows on the read thread and
deletes a domain's rows once its report is out. Rows older than a few days are dropped
whether reported or not, so a domain whose report cannot be sent costs nothing forever.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from twisted.internet.defer import Deferred

from rail.store.db import Connection

__all__ = [
    "TLS_REPORTS_SCHEMA",
    "SQLiteTLSReports",
    "TLSCount",
    "add_counts",
    "delete_rows",
    "drop_before",
    "read_day",
    "unreported_days",
]

TLS_REPORTS_SCHEMA = """
CREATE TABLE tls_outcomes (
    day TEXT NOT NULL,
    policy_domain TEXT NOT NULL,
    policy_type TEXT NOT NULL,
    policy_strings TEXT NOT NULL,
    result TEXT NOT NULL,
    mx_host TEXT NOT NULL,
    receiving_ip TEXT NOT NULL,
    count INTEGER NOT NULL,
    failure_reason TEXT,
    PRIMARY KEY (day, policy_domain, policy_type, policy_strings, result, mx_host, receiving_ip)
) WITHOUT ROWID;
"""

TLSCount = tuple[str, str, str, tuple[str, ...], str, str, str, int, str | None]
"""``(day, policy_domain, policy_type, policy_strings, result, mx_host, receiving_ip,
count, failure_reason)``: one row's key, the sessions to add, and the latest reason."""


def add_counts(connection: Connection, counts: Iterable[TLSCount]) -> None:
    """Add ``counts`` to their rows (creating them), in the caller's transaction; a
    row's failure reason becomes the latest non-null one."""
    connection.executemany(
        "INSERT INTO tls_outcomes (day, policy_domain, policy_type, policy_strings, result,"
        " mx_host, receiving_ip, count, failure_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (day, policy_domain, policy_type, policy_strings, result, mx_host,"
        " receiving_ip) DO UPDATE SET count = tls_outcomes.count + excluded.count,"
        " failure_reason = coalesce(excluded.failure_reason, tls_outcomes.failure_reason)",
        [
            (day, domain, kind, json.dumps(list(strings)), result, mx, ip, count, reason)
            for day, domain, kind, strings, result, mx, ip, count, reason in counts
        ],
    )


def unreported_days(connection: Connection, before: str) -> list[str]:
    """The days before ``before`` (``YYYY-MM-DD``) that still have rows, oldest first."""
    rows = connection.execute(
        "SELECT DISTINCT day FROM tls_outcomes WHERE day < ? ORDER BY day", (before,)
    )
    return [day for (day,) in rows]


def read_day(connection: Connection, day: str) -> list[TLSCount]:
    """Every row of ``day``, by policy domain."""
    rows = connection.execute(
        "SELECT day, policy_domain, policy_type, policy_strings, result, mx_host,"
        " receiving_ip, count, failure_reason FROM tls_outcomes WHERE day = ?"
        " ORDER BY policy_domain",
        (day,),
    )
    return [
        (d, domain, kind, tuple(json.loads(strings)), result, mx, ip, count, reason)
        for d, domain, kind, strings, result, mx, ip, count, reason in rows
    ]


def delete_rows(connection: Connection, day: str, domains: Sequence[str]) -> int:
    """Delete the rows of ``domains`` for ``day`` (their report is out); how many."""
    deleted = 0
    for domain in domains:
        cursor = connection.execute(
            "DELETE FROM tls_outcomes WHERE day = ? AND policy_domain = ?", (day, domain)
        )
        deleted += cursor.rowcount
    return deleted


def drop_before(connection: Connection, day: str) -> int:
    """Delete every row older than ``day``, reported or not; how many."""
    return connection.execute("DELETE FROM tls_outcomes WHERE day < ?", (day,)).rowcount


class SQLiteTLSReports:
    """The TLS-RPT counters of :class:`rail.store.queuestore.QueueStore` (a mixin): writes on
    the writer thread, reads on the read thread. Needs ``_run(work, write)`` and
    ``_read(read)`` from the store."""

    def _run(self, work: Callable[[Any], tuple[object, int]], write: bool) -> Deferred[Any]:
        raise NotImplementedError

    def _read(self, read: Callable[[Any], Any]) -> Deferred[Any]:
        raise NotImplementedError

    def add_tls_counts(self, counts: Sequence[TLSCount]) -> Deferred[None]:
        """Add ``counts`` in the writer's next batch."""

        def work(connection: Any) -> tuple[object, int]:
            add_counts(connection, counts)
            return None, 0

        return self._run(work, write=True).addCallback(lambda _: None)

    def tls_unreported_days(self, before: str) -> Deferred[list[str]]:
        """The days before ``before`` that still have counters (read thread)."""
        return self._read(lambda c: unreported_days(c, before))

    def tls_day(self, day: str) -> Deferred[list[TLSCount]]:
        """The counters of ``day`` (read thread)."""
        return self._read(lambda c: read_day(c, day))

    def tls_reported(self, day: str, domains: Sequence[str]) -> Deferred[int]:
        """Forget the counters of ``domains`` for ``day``: their report is out."""
        return self._run(lambda c: (delete_rows(c, day, domains), 0), write=True)

    def tls_drop_before(self, day: str) -> Deferred[int]:
        """Forget every counter older than ``day``."""
        return self._run(lambda c: (drop_before(c, day), 0), write=True)
