"""MemoryStore's test knobs (its IQueueStore behaviour is pinned by test_contract)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rail.store.model import Accepted, IdempotencyKey, QueueFullError, Replayed
from rail.testing import MemoryStore
from tests.store.test_contract import make_message


class MemoryStoreKnobTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStore(self.clock)

    def test_answers_at_once(self) -> None:
        """accept returns an already-fired Deferred and records the message in ``messages``."""
        message = make_message()
        self.assertEqual(self.successResultOf(self.store.accept(message)), Accepted(message.id, 1))
        self.assertEqual(self.store.messages, {message.id: message})

    def test_fail_next(self) -> None:
        """``fail_next`` fails exactly the next accept with that exception, storing nothing."""
        self.store.fail_next = RuntimeError("boom")
        first, second = make_message(), make_message()
        self.failureResultOf(self.store.accept(first), RuntimeError)
        self.assertIsNone(self.store.fail_next)
        self.assertEqual(self.successResultOf(self.store.accept(second)), Accepted(second.id, 1))
        self.assertEqual(list(self.store.messages), [second.id])

    def test_full(self) -> None:
        """``full`` refuses new messages with QueueFullError but still answers replays."""
        first = make_message()
        key = IdempotencyKey("req", "fp")
        self.successResultOf(self.store.accept(first, key))
        self.store.full = True
        self.failureResultOf(self.store.accept(make_message()), QueueFullError)
        replay = self.successResultOf(self.store.accept(make_message(), key))
        self.assertEqual(replay, Replayed(first.id, 1))
        self.assertEqual(list(self.store.messages), [first.id])

    def test_update_recipient(self) -> None:
        """update_recipient plays delivery: the row changes, ``updated_at`` comes from the
        clock and the overall status follows."""
        message = make_message(recipients=("a@example.net", "b@example.net"))
        self.store.accept(message)
        self.clock.advance(42)
        self.store.update_recipient(message.id, 0, status="sent", last_reply="250 ok")
        self.store.update_recipient(message.id, 1, status="bounced", last_reply="550 no")
        status = self.successResultOf(self.store.status("alice", message.id))
        self.assertEqual(status.status, "bounced")
        self.assertEqual(
            [(r.status, r.attempts, r.last_reply, r.updated_at) for r in status.recipients],
            [("sent", 1, "250 ok", 42.0), ("bounced", 1, "550 no", 42.0)],
        )

    def test_seeded_message(self) -> None:
        """A message put straight into ``messages`` reads back with its recipients queued."""
        message = make_message()
        self.store.messages[message.id] = message
        status = self.successResultOf(self.store.status("alice", message.id))
        self.assertEqual([r.status for r in status.recipients], ["queued"])
