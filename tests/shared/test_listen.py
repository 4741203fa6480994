"""Other nodes' changes arrive by LISTEN/NOTIFY (:mod:`rail.shared.listen`)."""

from __future__ import annotations

from typing import Any

import psycopg
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from rail.shared.listen import Notifications
from rail.shared.schema import CHANNEL
from tests.support.postgres import postgres_dsn


class NotificationsTests(TestCase):
    def setUp(self) -> None:
        self.dsn = postgres_dsn(self)
        self.service = Notifications(self.dsn, call_from_thread=reactor.callFromThread)
        self.calls: list[str] = []
        self.waiting: dict[str, Deferred[None]] = {}
        for topic in ("revocations", "client_events"):
            self.service.subscribe(topic, lambda topic=topic: self._called(topic))
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def _called(self, topic: str) -> None:
        self.calls.append(topic)
        waiter = self.waiting.pop(topic, None)
        if waiter is not None:
            waiter.callback(None)

    def next_call(self, topic: str) -> Deferred[None]:
        self.waiting[topic] = Deferred()
        return self.waiting[topic].addTimeout(30, reactor)

    def notify(self, topic: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, topic))

    @inlineCallbacks
    def test_handler_of_the_topic_runs(self) -> Any:
        """A notification runs its topic's handlers on the reactor thread, not others'."""
        yield deferToThread(self.service.listening.wait, 30)
        called = self.next_call("revocations")
        yield deferToThread(self.notify, "revocations")
        yield called
        self.assertEqual(self.calls, ["revocations"])

    @inlineCallbacks
    def test_reconnects_and_catches_up(self) -> Any:
        """When the listening connection is killed, the service connects again and runs
        every handler (what changed meanwhile was not notified), then hears new
        notifications."""
        yield deferToThread(self.service.listening.wait, 30)
        caught_up = self.next_call("client_events")

        def kill() -> None:
            with psycopg.connect(self.dsn, autocommit=True) as connection:
                connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'rail-listen' AND datname = current_database()"
                )

        yield deferToThread(kill)
        yield caught_up
        self.assertEqual(sorted(self.calls), ["client_events", "revocations"])
        yield deferToThread(self.service.listening.wait, 30)
        called = self.next_call("revocations")
        yield deferToThread(self.notify, "revocations")
        yield called

    @inlineCallbacks
    def test_stop_closes_the_connection(self) -> Any:
        """stopService fires once the thread has closed its connection."""
        yield deferToThread(self.service.listening.wait, 30)
        yield self.service.stopService()
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            count = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rail-listen'"
                " AND datname = current_database()"
            ).fetchone()
        self.assertEqual(count, (0,))
