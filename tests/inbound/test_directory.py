"""The inbound directory: start-up load, periodic and on-demand refresh off the reactor."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rail.inbound.directory import Directory, DirectoryService
from rail.inbound.recipients import Route, route_recipient
from rail.pki.registry import CertificateRecord
from tests.inbound.test_recipients import NOW, ROUTES, make_config, record


class FakeRegistry:
    """Records handed out per read; reads counted, optionally failing."""

    def __init__(self, records: list[CertificateRecord]) -> None:
        self.records = records
        self.reads: list[datetime] = []
        self.error: Exception | None = None

    def valid_records(self, now: datetime) -> list[CertificateRecord]:
        self.reads.append(now)
        if self.error is not None:
            raise self.error
        return [r for r in self.records if r.status(now) == "valid"]


class FakeThreads:
    """Stands in for deferToThreadPool: the test decides when each "thread" finishes."""

    def __init__(self) -> None:
        self.queued: list[tuple[Callable[[], Any], defer.Deferred[Any]]] = []

    def __call__(self, work: Callable[[], Any]) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.queued.append((work, d))
        return d

    def finish(self) -> None:
        work, d = self.queued.pop(0)
        try:
            result = work()
        except Exception as e:
            d.errback(e)
        else:
            d.callback(result)


class DirectoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW.timestamp())
        self.registry = FakeRegistry([record("app", ["hello@app.test"])])
        self.threads = FakeThreads()
        self.directory = Directory(
            make_config(routes=ROUTES),
            self.registry.valid_records,
            clock=self.clock,
            in_thread=self.threads,
            interval=30.0,
        )

    def client(self, address: str) -> str | None:
        decision = route_recipient(self.directory.current(), address)
        return decision.client if isinstance(decision, Route) else None

    def test_load_is_synchronous(self) -> None:
        """load() reads the registry at once, with the clock's time, no thread."""
        self.assertIsNone(self.client("hello@app.test"))
        self.directory.load()
        self.assertEqual(self.client("hello@app.test"), "app")
        self.assertEqual(self.registry.reads, [NOW])
        self.assertEqual(self.threads.queued, [])

    def test_periodic_refresh_in_thread(self) -> None:
        """Every interval the registry is read in a thread; the new table is used once
        the read finishes; stop() leaves nothing scheduled."""
        self.directory.load()
        self.directory.start()
        self.registry.records.append(record("new", ["hi@new.test"]))
        self.clock.advance(29)
        self.assertEqual(self.threads.queued, [])
        self.clock.advance(1)
        self.assertEqual(len(self.threads.queued), 1)
        self.assertIsNone(self.client("hi@new.test"))
        self.threads.finish()
        self.assertEqual(self.client("hi@new.test"), "new")
        self.clock.advance(30)
        self.assertEqual(len(self.threads.queued), 1)
        self.threads.finish()
        stopped = self.directory.stop()
        self.successResultOf(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refresh_on_demand(self) -> None:
        """refresh() reads now; it fires once that read is done."""
        self.directory.load()
        self.registry.records.append(record("new", ["hi@new.test"]))
        done = self.directory.refresh()
        self.assertNoResult(done)
        self.threads.finish()
        self.successResultOf(done)
        self.assertEqual(self.client("hi@new.test"), "new")
        self.assertEqual(self.clock.getDelayedCalls(), [])  # never started: no timer

    def test_refresh_during_read(self) -> None:
        """A refresh asked for while a read runs gets a second read after it: the first
        may have started before the change the caller knows about."""
        first = self.directory.refresh()
        second = self.directory.refresh()
        self.assertEqual(len(self.threads.queued), 1)
        self.threads.finish()
        self.successResultOf(first)
        self.assertNoResult(second)
        self.assertEqual(len(self.threads.queued), 1)
        self.threads.finish()
        self.successResultOf(second)
        self.assertEqual(len(self.registry.reads), 2)

    def test_failed_read_keeps_table(self) -> None:
        """A registry error is logged; the previous table stays; refresh() still fires."""
        self.directory.load()
        self.registry.error = sqlite3.OperationalError("database is locked")
        with capturedLogs() as events:
            done = self.directory.refresh()
            self.threads.finish()
        self.successResultOf(done)
        self.assertEqual(self.client("hello@app.test"), "app")
        [error] = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertIn("database is locked", error["why"])

    def test_stop_waits_for_read(self) -> None:
        """stop() during a read fires when the read ends, and nothing is rescheduled."""
        self.directory.start()
        self.clock.advance(30)
        stopped = self.directory.stop()
        self.assertNoResult(stopped)
        self.threads.finish()
        self.successResultOf(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_reconfigure(self) -> None:
        """A reloaded configuration applies at once, without reading the registry."""
        self.directory.load()
        self.assertIsNone(self.client("x@rail.test"))  # catchall has no certificate
        self.directory.reconfigure(
            make_config(routes=[{"match": "*@rail.test", "client": "app"}], postmaster="app")
        )
        self.assertEqual(self.client("x@rail.test"), "app")
        self.assertEqual(self.client("postmaster@app.test"), "app")
        self.assertEqual(len(self.registry.reads), 1)

    def test_problems_logged_once(self) -> None:
        """Routing problems are warned about when they appear or change, not on every
        refresh."""
        with capturedLogs() as events:
            self.directory.load()
            self.directory.refresh()
            self.threads.finish()
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        # Routes to billing and catchall, which have no certificate; postmaster gaps.
        self.assertEqual(len(warnings), 3)
        self.assertIn("inbound.routes[0]", warnings[0]["problem"])

    def test_shared_address_warned_and_kept_by_first(self) -> None:
        """A certificate issued later with --allow-shared-address does not take the
        address: after the refresh the first client still gets its mail, and one warning
        names the conflict."""
        self.directory.load()
        self.registry.records.append(
            record("intruder", ["hello@app.test"], issued=NOW - timedelta(hours=1))
        )
        with capturedLogs() as events:
            self.directory.refresh()
            self.threads.finish()
        self.assertEqual(self.client("hello@app.test"), "app")
        [warning] = [
            e
            for e in events
            if e["log_level"] == LogLevel.warn and "hello@app.test" in e["problem"]
        ]
        self.assertIn("it belongs to 'app', issued first", warning["problem"])

    def test_service(self) -> None:
        """DirectoryService starts the periodic refresh and stops it (waiting for a read
        in progress)."""
        service = DirectoryService(self.directory)
        service.startService()
        self.clock.advance(30)
        self.assertEqual(len(self.threads.queued), 1)
        stopped = service.stopService()
        self.assertNoResult(stopped)
        self.threads.finish()
        self.successResultOf(stopped)
        self.assertFalse(service.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])
