"""Reports to return paths over a real port 25: an ARF complaint is recorded, forged,
malformed and oversized ones suppress nothing.

Rail runs in this process with its port 25 on loopback; the reports are sent with
smtplib over STARTTLS, as a mailbox provider's feedback loop would.
"""

from __future__ import annotations

import json
import smtplib
import sqlite3
import ssl
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from rail.bounces.secret import load_or_create_secret
from rail.bounces.verp import ReturnPaths
from rail.events.model import EVENT_TYPES
from rail.events.subscriptions import Subscription, Subscriptions
from rail.service import build_service
from rail.store.ids import new_message_id
from rail.store.model import NewMessage
from rail.store.schema import database_path
from tests.integration.fixtures import make_config, rail_ca
from tests.integration.processes import free_port

_FIXTURES = Path(__file__).parent.parent / "bounces" / "fixtures"
_PLACEHOLDER = b"b-01JEXAMPLE0000000000000000-0123456789abcdef@bounces.rail.test"


def _send(port: int, rcpt: str, data: bytes) -> tuple[int, bytes]:
    """Deliver ``data`` to ``rcpt`` from the null sender over STARTTLS; the reply to the
    RCPT if refused, else to the end of DATA (blocking)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("fbl.mailbox.example")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        client.starttls(context=context)
        client.ehlo("fbl.mailbox.example")
        client.mail("<>")
        code, text = client.rcpt(rcpt)
        if code >= 300:
            return code, text
        return client.data(data)


class ReportIntakeTests(TestCase):
    timeout = 60

    async def _start(self) -> None:
        data = Path(self.mktemp()).absolute() / "data"
        self.data = data
        self.port = free_port()
        config = make_config(
            data,
            listen={
                "https": None,
                "submission": None,
                "inbound": f"tcp:{self.port}:interface=127.0.0.1",
                "http": None,
                "dns": None,
            },
            delivery={"hold": True},
            bounces={"max_report_size": "16KB"},
        )
        rail_ca(data)
        root = build_service(config, reactor)
        root.privilegedStartService()
        root.startService()
        self.addCleanup(root.stopService)
        self.store = root.getServiceNamed("store").store
        self.store._writer.subscriptions = Subscriptions(
            {c: Subscription(frozenset(EVENT_TYPES)) for c in ("app", "mallory")}
        )
        self.paths = ReturnPaths(load_or_create_secret(data))

    async def _message(self, client: str, recipients: tuple[str, ...]) -> str:
        now = reactor.seconds()
        message_id = new_message_id(now)
        body = b"From: <app@rail.test>\r\nSubject: hi\r\n\r\nhi\r\n"
        await self.store.accept(
            NewMessage(message_id, client, f"{client}@rail.test", recipients, body, "api", now)
        )
        return message_id

    def _rows(self, sql: str) -> list[Any]:
        connection = sqlite3.connect(database_path(self.data / "queue"))
        try:
            return connection.execute(sql).fetchall()
        finally:
            connection.close()

    async def test_arf_complaint(self) -> None:
        """An RFC 5965 abuse report to a message's return path: 250, message.complained
        for the app with the report's fields, carol@ suppressed as a complaint from arf;
        sent again, it changes nothing."""
        await self._start()
        message_id = await self._message("app", ("carol@mailbox.example",))
        verp = self.paths.address(message_id, "app@rail.test")
        report = (_FIXTURES / "arf-abuse.eml").read_bytes().replace(b"\n", b"\r\n")
        report = report.replace(_PLACEHOLDER, verp.encode())
        for _ in range(2):
            code, text = await deferToThread(_send, self.port, verp, report)
            self.assertEqual(code, 250, text)
        events = self._rows(
            "SELECT client, type, recipient, details FROM events WHERE type != 'message.accepted'"
        )
        self.assertEqual(len(events), 1)
        client, kind, recipient, details = events[0]
        self.assertEqual(
            (client, kind, recipient), ("app", "message.complained", "carol@mailbox.example")
        )
        self.assertEqual(
            json.loads(details),
            {
                "feedback_type": "abuse",
                "user_agent": "SomeGenerator/1.0",
                "reporting_mta": "mail.mailbox.example",
                "arrival_date": "Thu, 8 Mar 2005 14:00:00 EDT",
                "suppressed": True,
            },
        )
        self.assertEqual(
            self._rows("SELECT client, address, reason, source FROM suppressions"),
            [("app", "carol@mailbox.example", "complaint", "arf")],
        )
        self.assertEqual(self._rows("SELECT count(*) FROM inbound"), [(0,)])

    async def test_bad_input_suppresses_nothing(self) -> None:
        """A forged tag, a made-up address on the bounce domain, a report naming another
        client's recipient, a malformed report and an oversized one: refused (550 5.1.1,
        550 5.6.0, 552 5.3.4) or ignored; no event, no suppression, nothing spooled."""
        await self._start()
        own = await self._message("app", ("carol@mailbox.example",))
        await self._message("mallory", ("victim@mailbox.example",))
        verp = self.paths.address(own, "app@rail.test")
        local, _, domain = verp.partition("@")
        dsn = (_FIXTURES / "postfix-dsn.eml").read_bytes().replace(b"\n", b"\r\n")
        forged_tag = f"{local[:-4]}0000@{domain}"
        for rcpt in (forged_tag, f"b-{own}@{domain}", f"abuse@{domain}"):
            code, text = await deferToThread(_send, self.port, rcpt, dsn)
            self.assertEqual((code, text[:5]), (550, b"5.1.1"), rcpt)
        # Valid return path, but the report names mallory's recipient: ignored.
        other = dsn.replace(b"gone@dest.test", b"victim@mailbox.example")
        code, _ = await deferToThread(_send, self.port, verp, other)
        self.assertEqual(code, 250)
        malformed = (
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=Q\r\n\r\n"
            b"--Q\r\nContent-Type: message/delivery-status\r\n\r\n\xff garbage\r\n--Q--\r\n"
        )
        code, text = await deferToThread(_send, self.port, verp, malformed)
        self.assertEqual((code, text[:5]), (550, b"5.6.0"))
        oversized = dsn + (b"y" * 900 + b"\r\n") * 20
        code, text = await deferToThread(_send, self.port, verp, oversized)
        self.assertEqual((code, text[:5]), (552, b"5.3.4"))
        self.assertEqual(
            self._rows("SELECT count(*) FROM events WHERE type != 'message.accepted'"), [(0,)]
        )
        self.assertEqual(self._rows("SELECT count(*) FROM suppressions"), [(0,)])
        self.assertEqual(self._rows("SELECT count(*) FROM async_reports"), [(0,)])
        self.assertEqual(self._rows("SELECT count(*) FROM inbound"), [(0,)])
