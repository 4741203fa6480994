"""The poller that brings the other nodes' usage into the rate counters, on a Clock."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from rail.config.schema import ClientLimits
from rail.policy.rates import ClientRates, Limited
from rail.store.queuestore import QueueStore
from rail.store.usagepoll import OVERLAP, UsagePoller

NOW = 1_789_999_230.0  # 30 s into a minute


class _Store:
    """Answers each read with a Deferred the test fires."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, tuple[float, ...], Deferred[Any]]] = []

    def usage_seed(self, since: float, recent: float) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self.reads.append(("seed", (since, recent), done))
        return done

    def others_usage(self, since: float) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        self.reads.append(("poll", (since,), done))
        return done


class UsagePollerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = _Store()
        self.rates = ClientRates(self.clock, lambda client: ClientLimits(messages_per_minute=10))
        self.poller = UsagePoller(self.clock, cast(QueueStore, self.store), self.rates)
        self.poller.startService()
        self.addCleanup(self.poller.stopService)

    def test_seed_then_polls_from_the_overlap(self) -> None:
        """The first read is the day's seed, row by row from a whole minute ago; each
        later read starts OVERLAP seconds before the previous one began; ``/stats`` gives
        the polls, the messages merged and the time since the last poll."""
        kind, (since, recent), done = self.store.reads[0]
        self.assertEqual((kind, since, recent), ("seed", NOW - 86400, NOW - 30 - 60))
        done.callback(([("app", NOW - 600, 4, 4)], [("app", NOW - 10, "b", 3, 3)]))
        self.assertEqual(self.poller.polls, 1)
        self.clock.advance(1)
        kind, (since,), done = self.store.reads[1]
        self.assertEqual((kind, since), ("poll", NOW - OVERLAP))
        # The seed's recent row again, grown by 2, and a new one: 3 + 2 + 6 = 11 > 10.
        done.callback([("app", NOW - 10, "b", 5, 5), ("app", NOW, "c", 6, 6)])
        self.assertEqual(self.rates.check_message("app"), Limited("messages_per_minute", 49))
        self.clock.advance(0.5)
        self.assertEqual(
            self.poller.summary(),
            {
                "polls": 2,
                "other_nodes_messages": 4 + 3 + 2 + 6,
                "seconds_since_poll": 0.5,
                "failing": False,
            },
        )

    def test_reads_never_overlap(self) -> None:
        """A tick while a read is in flight starts no other read."""
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(len(self.store.reads), 1)

    def test_failure_retries_from_the_same_point(self) -> None:
        """A failed read is logged once, the next tick reads from the same point, and
        ``/stats`` says reads fail until one works again."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.store.reads[0][2].callback(([], []))
        self.clock.advance(1)
        self.store.reads[1][2].errback(RuntimeError("database away"))
        self.clock.advance(1)
        self.store.reads[2][2].errback(RuntimeError("database away"))
        errors = [e for e in events if e.get("log_level") == LogLevel.error]
        self.assertEqual([e["error"] for e in errors], ["database away"])
        self.clock.advance(1)
        self.assertEqual(self.store.reads[3][1], self.store.reads[1][1])
        self.assertEqual(self.poller.polls, 1)
        self.assertTrue(self.poller.summary()["failing"])
        self.store.reads[3][2].callback([])
        self.assertFalse(self.poller.summary()["failing"])

    def test_seed_failure_seeds_again(self) -> None:
        """A seed that fails is tried again at the next tick."""
        self.store.reads[0][2].errback(RuntimeError("database away"))
        self.clock.advance(1)
        self.assertEqual(self.store.reads[1][0], "seed")
