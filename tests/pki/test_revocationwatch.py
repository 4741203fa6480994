"""RevocationWatch: the CRL file looked at on a clock and on demand, the work in a thread."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rail.pki.crl import build_crl, crl_pem
from rail.pki.files import write_file_atomic
from rail.pki.revocations import Revocations
from rail.pki.revocationwatch import RevocationWatch
from tests.pki.helpers import NOW, make_ca


class _Thread:
    """Runs submitted work only when the test says so, like a busy thread pool."""

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[[], Any], defer.Deferred[Any]]] = []

    def __call__(self, work: Callable[[], Any]) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.pending.append((work, d))
        return d

    def run(self) -> None:
        while self.pending:
            work, d = self.pending.pop(0)
            try:
                result = work()
            except Exception:
                d.errback()
            else:
                d.callback(result)


class RevocationWatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = make_ca()
        self.path = Path(self.mktemp())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.number = 1
        self.publish()
        self.revocations = Revocations(self.path, self.ca.certificate)
        self.revocations.load()
        self.clock = Clock()
        self.thread = _Thread()
        self.watch = RevocationWatch(
            self.revocations, clock=self.clock, in_thread=self.thread, interval=1.0
        )

    def publish(self, *serials: int) -> None:
        crl = build_crl(self.ca, [(s, NOW) for s in serials], NOW, crl_number=self.number)
        self.number += 1
        write_file_atomic(self.path, crl_pem(crl), 0o644)

    def test_looks_every_interval_in_the_thread(self) -> None:
        """Once started, a changed CRL is loaded at the next tick, and only when the
        thread has done the work; the reactor side reads the set without I/O."""
        self.watch.startService()
        self.publish(5)
        self.clock.advance(1.0)
        self.assertEqual(self.revocations.serials, frozenset())
        self.thread.run()
        self.assertEqual(self.revocations.serials, frozenset({5}))
        self.publish(5, 6)
        self.clock.advance(1.0)
        self.thread.run()
        self.assertEqual(self.revocations.serials, frozenset({5, 6}))
        self.successResultOf(self.watch.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refresh_fires_after_a_later_look(self) -> None:
        """refresh() during a look already running fires only after one more look, which
        sees a CRL written after the first started."""
        self.watch.startService()
        self.clock.advance(1.0)
        work, first = self.thread.pending.pop(0)
        seen = work()  # the tick's look reads the file as it was...
        self.publish(9)  # ...then the CRL changes, and someone asks for a refresh
        refreshed = self.watch.refresh()
        first.callback(seen)
        self.assertNoResult(refreshed)
        self.assertEqual(self.revocations.serials, frozenset())
        self.thread.run()
        self.successResultOf(refreshed)
        self.assertEqual(self.revocations.serials, frozenset({9}))
        self.successResultOf(self.watch.stopService())

    def test_stop_waits_for_a_running_look(self) -> None:
        """stopService fires once the look in the thread has finished, and nothing is
        scheduled afterwards."""
        self.watch.startService()
        self.clock.advance(1.0)
        stopped = self.watch.stopService()
        self.assertNoResult(stopped)
        self.thread.run()
        self.successResultOf(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unusable_crl_logged_once(self) -> None:
        """A damaged CRL keeps the loaded set and is logged once, not at every look; a
        good one afterwards is loaded."""
        self.publish(3)
        self.revocations.refresh()
        self.watch.startService()
        write_file_atomic(self.path, b"garbage", 0o644)
        with capturedLogs() as events:
            for _ in range(3):
                self.clock.advance(1.0)
                self.thread.run()
            self.path.unlink()
            for _ in range(3):
                self.clock.advance(1.0)
                self.thread.run()
        errors = [e for e in events if e["log_level"] is LogLevel.error]
        self.assertEqual(len(errors), 2, errors)
        self.assertEqual(self.revocations.serials, frozenset({3}))
        self.publish(3, 4)
        self.clock.advance(1.0)
        self.thread.run()
        self.assertEqual(self.revocations.serials, frozenset({3, 4}))
        self.successResultOf(self.watch.stopService())
