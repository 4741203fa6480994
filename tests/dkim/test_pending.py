"""``oldest_pending_received_at``: what keeps an old DKIM key published."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.store.inspect import oldest_pending_received_at
from rail.store.schema import open_writable
from tests.dkim.helpers import add_message


class OldestPendingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.queue = Path(self.mktemp()) / "queue"

    def test_no_database(self) -> None:
        """Without a queue database there is nothing pending, and nothing is created."""
        self.assertIsNone(oldest_pending_received_at(self.queue))
        self.assertFalse(self.queue.exists())

    def test_empty(self) -> None:
        """An empty queue has nothing pending."""
        open_writable(self.queue).close()
        self.assertIsNone(oldest_pending_received_at(self.queue))

    def test_oldest_with_queued_or_deferred(self) -> None:
        """The earliest received_at among messages with a queued or deferred recipient;
        messages whose recipients are all sent or bounced do not count."""
        connection = open_writable(self.queue)
        add_message(connection, "01A", 100.0, "sent", "bounced")
        add_message(connection, "01B", 200.5, "sent", "deferred")
        add_message(connection, "01C", 300.0, "queued")
        connection.close()
        self.assertEqual(oldest_pending_received_at(self.queue), 200.5)

    def test_all_done(self) -> None:
        """A queue of delivered and bounced mail has nothing pending."""
        connection = open_writable(self.queue)
        add_message(connection, "01A", 100.0, "sent")
        add_message(connection, "01B", 50.0, "bounced")
        connection.close()
        self.assertIsNone(oldest_pending_received_at(self.queue))
