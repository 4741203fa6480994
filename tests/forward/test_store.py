"""Forwarded copies are queued in the transaction that spools the inbound message, in
the SQLite store and the MemoryStore alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from rail.store.ids import new_message_id
from rail.store.model import NewMessage
from rail.testing import MemoryStore
from tests.store.test_contract import open_postgres, open_sqlite
from tests.store.test_inbound import make_inbound

_NOW = 1_800_000_000.0


class _ForwardSpoolContract:
    store: Any

    def make_store(self) -> Any:
        raise NotImplementedError

    async def test_forwards_queued_with_the_message(self) -> None:
        """An inbound message with forwards and no webhook target is stored; its
        forwards are due for outbound delivery at once, and delivery is woken."""
        woken: list[int] = []
        self.store.observe_accepted(lambda: woken.append(1))
        copy = NewMessage(
            id=new_message_id(_NOW),
            client="forward:alias@rail.test",
            sender="SRS0=abcd=AB=remote.example=someone@rail.test",
            recipients=("bob@mailbox.example",),
            data=b"ARC-Seal: x\r\nSubject: hi\r\n\r\nbody\r\n",
            channel="smtp",
            received_at=_NOW,
        )
        message = attrs.evolve(make_inbound(targets=()), forwards=(copy,))
        accepted = await self.store.accept_inbound(message)
        self.assertEqual(accepted.recipients, 0)  # type: ignore[attr-defined]
        self.assertEqual(woken, [1])  # type: ignore[attr-defined]
        [job] = await self.store.claim(_NOW, 10, frozenset())
        self.assertEqual(  # type: ignore[attr-defined]
            (job.message_id, job.client, job.sender, job.data),
            (copy.id, copy.client, copy.sender, copy.data),
        )
        self.assertEqual([r.address for r in job.recipients], ["bob@mailbox.example"])  # type: ignore[attr-defined]


class MemoryForwardSpoolTests(_ForwardSpoolContract, TestCase):
    def make_store(self) -> Any:
        return MemoryStore(Clock())

    def setUp(self) -> None:
        self.store = self.make_store()


class SQLiteForwardSpoolTests(_ForwardSpoolContract, TestCase):
    def setUp(self) -> None:
        self.store = open_sqlite(self, Path(self.mktemp()) / "queue")


class PostgresForwardSpoolTests(_ForwardSpoolContract, TestCase):
    def setUp(self) -> None:
        self.store = open_postgres(self)
