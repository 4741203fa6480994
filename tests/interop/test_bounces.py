"""Asynchronous bounces come back from a real Postfix to Rail's signed return path, and
mail with that return path passes SPF and DMARC.

Rail runs in this process (so the test can subscribe its client to events and read the
store), with its port 25 and its own DNS server on loopback. A real Postfix is the
recipient MX of ``dest.test``: it refuses one recipient at RCPT, delivers another, and
accepts a third it has no mailbox for, then bounces it with a DSN of its own to the
message's return path, which it relays to Rail's port 25. Rail must record that as a
``message.bounced`` event (source ``dsn``) and a suppression.

The message Postfix delivered carries Rail's VERP address as its Return-Path; checked
against the zone Rail's DNS serves, with Rail's own inbound verifier and with the
``authheaders`` package (pyspf, dkimpy and its own DMARC), SPF passes for the return
path and DMARC passes, aligned with the From domain.
"""

from __future__ import annotations

import email
import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

import authheaders
import dns.resolver
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.names import dns as tdns
from twisted.trial.unittest import TestCase

from rail.bounces.secret import load_or_create_secret
from rail.bounces.verp import ReturnPaths
from rail.delivery.resolve import make_resolver
from rail.events.model import EVENT_TYPES
from rail.events.subscriptions import Subscription, Subscriptions
from rail.inbound.verifier import Verifier
from rail.service import build_service
from rail.store.ids import new_message_id
from rail.store.model import NewMessage
from rail.store.schema import database_path
from tests.integration.fixtures import make_config, rail_ca
from tests.integration.processes import free_port
from tests.support.dnsserver import start_dns
from tests.support.postfix import start_postfix

_BOUNCING = """
smtpd_reject_unlisted_recipient = no
virtual_mailbox_maps = inline:{ {bob@dest.test=inbox/} }
smtpd_recipient_restrictions = check_recipient_access inline:{ rejected@dest.test=REJECT },
    permit_mynetworks, reject_unauth_destination
"""


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def _wait_for(check: Any, timeout: float = 60.0) -> Any:
    """Poll ``check()`` (run in a thread) every 0.1 s until it returns something true."""
    for _ in range(int(timeout * 10)):
        result = await deferToThread(check)
        if result:
            return result
        await deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"timed out after {timeout}s waiting for {check}")


class AsynchronousBounceTests(TestCase):
    timeout = 180

    async def test_postfix_bounce_becomes_event_and_suppression(self) -> None:
        """Postfix accepts gone@dest.test, then bounces it to the VERP address; Rail reads
        its DSN: a message.bounced event (source dsn, hard, 5.1.1) for the app, gone@ on
        the app's suppression list, the report on the recipient, which stays sent. The
        delivered copy's Return-Path is the message's verified return path, and it passes
        SPF and DMARC through Rail's verifier and through authheaders."""
        directory = Path(self.mktemp()).absolute()
        data = directory / "data"
        world = await start_dns(
            reactor,
            {
                "dest.test": [tdns.Record_MX(10, b"mx.dest.test", ttl=60)],
                "mx.dest.test": [tdns.Record_A("127.0.0.1", ttl=60)],
            },
        )
        self.addCleanup(world.stop)
        postfix_port, inbound_port, dns_port = free_port(), free_port(), free_port()
        config = make_config(
            data,
            listen={
                "https": None,
                "submission": None,
                "inbound": f"tcp:{inbound_port}:interface=127.0.0.1",
                "http": None,
                "dns": f"tcp:{dns_port}:interface=127.0.0.1",
            },
            delivery={"nameservers": [f"127.0.0.1:{world.port}"], "port": postfix_port},
            dns={"ipv4": ["127.0.0.1"], "dmarc_policy": "reject"},
        )
        rail_ca(data)
        root = build_service(config, reactor)
        root.privilegedStartService()
        root.startService()
        self.addCleanup(root.stopService)
        store = root.getServiceNamed("store").store
        # The events helper's subscriptions are not wired yet: subscribe the app here.
        store._writer.subscriptions = Subscriptions({"app": Subscription(frozenset(EVENT_TYPES))})

        postfix = start_postfix(
            postfix_port, ("dest.test",), relay_to=inbound_port, extra=_BOUNCING
        )
        self.addCleanup(postfix.stop)
        await _wait_for(lambda: _accepts(postfix_port), timeout=20)

        now = reactor.seconds()
        message_id = new_message_id(now)
        body = (
            f"From: App <app@rail.test>\r\nTo: bob@dest.test\r\nSubject: bounce me\r\n"
            f"Message-ID: <{message_id}@rail.test>\r\n\r\nHello.\r\n"
        ).encode()
        recipients = ("bob@dest.test", "gone@dest.test", "rejected@dest.test")
        await store.accept(
            NewMessage(message_id, "app", "app@rail.test", recipients, body, "api", now)
        )

        async def reported() -> Any:
            status = await store.status("app", message_id)
            return status if status.recipients[1].reports else None

        status = None
        for _ in range(600):
            status = await reported()
            if status is not None:
                break
            await deferLater(reactor, 0.1, lambda: None)
        if status is None:
            log = postfix.log.read_text() if postfix.log.exists() else "(no Postfix log)"
            raise AssertionError(f"no asynchronous bounce recorded; Postfix:\n{log}")
        bob, gone, rejected = status.recipients
        self.assertEqual((bob.status, gone.status, rejected.status), ("sent", "sent", "bounced"))
        self.assertEqual(
            [(r.kind, r.status, r.classification) for r in gone.reports],
            [("bounce", "5.1.1", "hard")],
        )
        self.assertEqual(bob.reports, ())

        connection = sqlite3.connect(database_path(data / "queue"))
        self.addCleanup(connection.close)
        events = [
            (kind, recipient, json.loads(details))
            for kind, recipient, details in connection.execute(
                "SELECT type, recipient, details FROM events WHERE message_id = ?"
                " AND type = 'message.bounced'",
                (message_id,),
            )
        ]
        dsn_events = [e for e in events if e[2]["source"] == "dsn"]
        self.assertEqual(len(dsn_events), 1, events)
        kind, recipient, details = dsn_events[0]
        self.assertEqual(recipient, "gone@dest.test")
        self.assertEqual(
            (details["classification"], details["status"], details["suppressed"]),
            ("hard", "5.1.1", True),
        )
        self.assertEqual(
            connection.execute(
                "SELECT address, reason, source, message_id FROM suppressions WHERE client = 'app'"
            ).fetchall(),
            [("gone@dest.test", "hard_bounce", "dsn", message_id)],
        )
        # The refused recipient had Rail's own DSN at once; the DSN Postfix sent was not
        # spooled as inbound mail for any app.
        dsns = connection.execute(
            "SELECT count(*) FROM messages WHERE sender = '' AND client = 'app'"
        ).fetchone()
        self.assertEqual(dsns, (1,))
        self.assertEqual(connection.execute("SELECT count(*) FROM inbound").fetchone(), (0,))

        (delivered,) = postfix.delivered()
        await self._check_authentication(delivered, data, dns_port)

    async def _check_authentication(self, delivered: bytes, data: Path, dns_port: int) -> None:
        """SPF of the return path and DMARC pass with Rail's zone, two verifiers."""
        crlf = delivered.replace(b"\n", b"\r\n")
        parsed = email.message_from_bytes(delivered)
        return_path = parsed["Return-Path"].strip("<>")
        paths = ReturnPaths(load_or_create_secret(data))
        verp = paths.verify(return_path)
        assert verp is not None, return_path
        self.assertEqual(verp.bounce_domain, "bounces.rail.test")
        # What Postfix received, without the trace fields it added (Return-Path,
        # Delivered-To, Received), is what Rail sent.
        sent = crlf[crlf.index(b"DKIM-Signature:") :]

        verifier = Verifier(reactor, make_resolver((("127.0.0.1", dns_port),), reactor))
        auth = await verifier.verify("127.0.0.1", "rail.test", return_path, sent)
        self.assertEqual(
            (auth.spf, auth.spf_domain, auth.dmarc, auth.from_domain),
            ("pass", "bounces.rail.test", "pass", "rail.test"),
        )

        # Without its DKIM signatures the message still passes DMARC: on SPF alone, the
        # return path's domain aligning (relaxed) with the From domain.
        unsigned = sent[sent.index(b"\r\nFrom: ") + 2 :]
        auth = await verifier.verify("127.0.0.1", "rail.test", return_path, unsigned)
        self.assertEqual((auth.spf, auth.dkim, auth.dmarc), ("pass", (), "pass"))

        header = await deferToThread(_authheaders, sent, return_path, dns_port)
        self.assertIn("spf=pass", header)
        self.assertIn("smtp.mailfrom=bounces.rail.test", header)
        self.assertIn("dkim=pass", header)
        self.assertIn("dmarc=pass", header)
        # DMARC passes on SPF alone too: the return path's domain aligns (relaxed).
        spf_only = await deferToThread(_authheaders, sent, return_path, dns_port, False)
        self.assertIn("dmarc=pass", spf_only)


def _authheaders(message: bytes, mail_from: str, port: int, dkim: bool = True) -> str:
    """authheaders' Authentication-Results for ``message`` from 127.0.0.1, every look-up
    (pyspf's through dnspython's default resolver, DKIM's and DMARC's through
    ``dnsfunc``) sent to Rail's DNS server on ``port``."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    saved = dns.resolver.default_resolver
    dns.resolver.default_resolver = resolver

    def dnsfunc(name: bytes | str, timeout: int = 5) -> bytes | str | None:
        # dkimpy asks with bytes and wants bytes; authheaders' DMARC asks with str.
        text = name.decode() if isinstance(name, bytes) else name
        try:
            answer = resolver.resolve(text, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        value = b"".join(b"".join(record.strings) for record in answer)
        return value if isinstance(name, bytes) else value.decode()

    try:
        return str(
            authheaders.authenticate_message(
                message,
                "verifier.test",
                spf=True,
                dkim=dkim,
                dmarc=True,
                ip="127.0.0.1",
                mail_from=mail_from,
                helo="rail.test",
                dnsfunc=dnsfunc,
            )
        )
    finally:
        dns.resolver.default_resolver = saved
