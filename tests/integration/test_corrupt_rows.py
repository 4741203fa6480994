"""Damaged queue rows end to end: 1,000 queued messages, one damaged on disk, the rest flow.

A real SQLite queue holds 1,000 messages to ten domains. The store is closed, one row is
damaged by direct SQL on the file (its data truncated, turned into text, or changed so it
no longer matches its sha256), and the store is reopened: a restart. Delivery is wired by
:func:`rail.delivery.service.build_delivery` itself (the signing thread pool, the
Preparer, the real Signer creating the sender domain's DKIM keys in a thread, the real
SMTP client), routed through a loopback DNS server to Postfix's ``smtp-sink``.

Afterwards the sink holds the 999 good messages and nothing of the damaged one, which is
``failed`` with the reason (as ``GET /api/v1/messages/{id}`` reads it), counted once in
``rail_quarantined_total`` and never turned into a DSN; after another restart it is still
``failed`` and no claim hands it out. Each case takes a few seconds.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from twisted.internet import reactor
from twisted.internet.defer import DeferredList
from twisted.internet.task import deferLater
from twisted.names import dns
from twisted.trial.unittest import TestCase

from rail.config.parse import parse_config
from rail.delivery.service import build_delivery
from rail.delivery.stats import DeliveryStats
from rail.dkim.keys import KeyStore
from rail.quarantine import Quarantines
from rail.store.ids import new_message_id
from rail.store.model import NewMessage
from rail.store.schema import database_path
from rail.store.sqlite import SQLiteStore
from tests.support.dnsserver import start_dns
from tests.support.smtpsink import start_smtp_sink

_MESSAGES = 1000
_DOMAINS = 10
_WAIT = 60.0
"""Seconds of real time delivery may take before the test fails."""
_SENDER = "app@rail.test"


def _message(n: int, now: float) -> NewMessage:
    recipient = f"user{n}@d{n % _DOMAINS}.corrupt.test"
    data = (
        f"From: App <{_SENDER}>\r\n"
        f"To: <{recipient}>\r\n"
        f"Subject: corrupt rows {n}\r\n"
        f"Message-ID: <corrupt-{n}@rail.test>\r\n"
        "\r\n"
        f"Message {n}.\r\n"
    ).encode()
    return NewMessage(
        id=new_message_id(now),
        client="app",
        sender=_SENDER,
        recipients=(recipient,),
        data=data,
        channel="api",
        received_at=now,
    )


class CorruptRowTests(TestCase):
    timeout = 120

    def open_store(self) -> SQLiteStore:
        store = SQLiteStore.open(self.queue, reactor, max_queued=10_000, min_free_bytes=0)
        store.start()
        self.addCleanup(store.close)
        return store

    def sql(self, statement: str, *args: object) -> list[Any]:
        connection = sqlite3.connect(database_path(self.queue))
        try:
            rows = connection.execute(statement, args).fetchall()
            connection.commit()
            return rows
        finally:
            connection.close()

    async def _one_bad_row(self, change: str, reason: str) -> None:
        """Queue 1,000 messages, damage one with ``change`` (an SQL expression replacing
        its data), deliver, and check the outcome described in the module docstring."""
        directory = Path(self.mktemp()).resolve()
        self.queue = directory / "queue"
        now = reactor.seconds()
        messages = [_message(n, now) for n in range(_MESSAGES)]
        bad = messages[_MESSAGES // 2]

        store = self.open_store()
        accepted = await DeferredList([store.accept(m) for m in messages], fireOnOneErrback=True)
        self.assertEqual(len(accepted), _MESSAGES)
        await store.close()
        self.sql(f"UPDATE messages SET data = {change} WHERE id = ?", bad.id)  # noqa: S608
        store = self.open_store()  # a restart
        quarantines = Quarantines()
        store.observe_quarantined(quarantines)

        records = {
            f"d{d}.corrupt.test": [dns.Record_MX(10, b"mx.corrupt.test", ttl=3600)]
            for d in range(_DOMAINS)
        }
        records["mx.corrupt.test"] = [dns.Record_A("127.0.0.1", ttl=3600)]
        dns_server = await start_dns(reactor, records)
        self.addCleanup(dns_server.stop)
        dumps = directory / "sink"
        dumps.mkdir()
        sink = await start_smtp_sink(reactor, dump_dir=dumps)
        self.addCleanup(sink.stop)
        config = parse_config(
            {
                "hostname": "rail.test",
                "tls": {"self_signed": True},
                "data_dir": str(directory),
                "delivery": {
                    "nameservers": [f"127.0.0.1:{dns_server.port}"],
                    "port": sink.port,
                    "retry": ["1s"],
                },
            },
            directory,
        )
        keys = KeyStore.open(directory / "dkim")  # no keys yet: created on first use
        delivery = build_delivery(config, reactor, store, keys, DeliveryStats(now))
        delivery.startService()
        deadline = reactor.seconds() + _WAIT
        while (counts := await store.recipient_counts())["sent"] + counts["failed"] < _MESSAGES:
            if reactor.seconds() > deadline:
                self.fail(f"not delivered within {_WAIT}s: {counts}")
            await deferLater(reactor, 0.05)
        await delivery.stopService()
        await sink.stop()

        self.assertEqual(
            counts,
            {
                "queued": 0,
                "deferred": 0,
                "sent": _MESSAGES - 1,
                "bounced": 0,
                "failed": 1,
                "deleted": 0,
            },
        )
        delivered = [path.read_bytes() for path in dumps.iterdir()]
        self.assertEqual(len(delivered), _MESSAGES - 1)
        self.assertFalse(any(f"<corrupt-{_MESSAGES // 2}@".encode() in d for d in delivered))
        self.assertTrue(all(b"DKIM-Signature: " in d for d in delivered))
        self.assertEqual(keys.domains(), ["rail.test"])
        status = await store.status("app", bad.id)
        self.assertEqual((status.status, status.reason), ("failed", "quarantined: " + reason))
        self.assertEqual(quarantines.counts, {("outbound", "corrupt"): 1})
        self.assertIn(
            'rail_quarantined_total{kind="corrupt",queue="outbound"} 1.0',
            generate_latest(quarantines.registry).decode(),
        )
        self.assertEqual(self.sql("SELECT count(*) FROM messages"), [(_MESSAGES,)])  # no DSN

        await store.close()
        store = self.open_store()  # another restart: still failed, never claimed
        self.assertEqual(store.queued, 0)
        self.assertEqual(await store.claim(reactor.seconds() + 1e6, 100, frozenset()), [])
        self.assertEqual((await store.status("app", bad.id)).status, "failed")

    async def test_truncated_data(self) -> None:
        """Data cut short on disk: the other 999 are delivered, the damaged one is
        quarantined and stays so after a restart."""
        bad = _message(_MESSAGES // 2, 0)
        await self._one_bad_row(
            "substr(data, 1, 40)", f"stored data is truncated (40 of {len(bad.data)} bytes)"
        )

    async def test_wrong_type(self) -> None:
        """Data stored as text instead of a blob: the others flow, it is quarantined."""
        await self._one_bad_row("CAST(data AS TEXT)", "stored data has the wrong type (text)")

    async def test_hash_mismatch(self) -> None:
        """Data of the right length whose bytes no longer match the recorded sha256: the
        others flow, it is quarantined rather than sent altered."""
        await self._one_bad_row(
            "CAST(replace(data, 'Message', 'Massage') AS BLOB)",
            "stored data does not match its sha256",
        )
