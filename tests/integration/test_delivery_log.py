"""The delivery log end to end: real SMTP sessions on loopback, real STARTTLS.

Uses the harness of test_delivery_faults (the real scheduler, client and signer; the
queue and the scheduler's timers on a Clock) and checks the ``delivery.attempt`` and
``delivery.final`` lines for what really happened on the wire: the host and address
connected to and the TLS version negotiated.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.logger import capturedLogs

from rail.pki.ca import create_ca
from rail.pki.issue import issue_server_certificate
from rail.pki.keys import generate_private_key
from rail.pki.tls import ServerMaterial, server_options
from tests.integration.test_delivery_faults import _MX, _RECIPIENT, _Harness, _RailServers


def _starttls() -> Any:
    """A server TLS context for ``mx.dest.example`` (nobody verifies it: opportunistic)."""
    now = datetime.now(UTC)
    ca = create_ca("Delivery log CA", now, "ecdsa-p256")
    key = generate_private_key("ecdsa-p256")
    cert = issue_server_certificate(ca, _MX, ("127.0.0.1",), key.public_key(), now)
    return server_options(ServerMaterial(chain=(cert, ca.certificate), key=key), None)


class DeliveryLogTests(_Harness):
    async def test_tls_delivery_logged(self) -> None:
        """A message delivered over STARTTLS logs an attempt line naming the MX host, the
        address connected to and the negotiated TLS version, then a final line ``sent``;
        nothing of the message body is logged."""
        servers = _RailServers(starttls=_starttls())
        self.ports[_MX] = await self.rail_server(servers)
        message_id = self.accept()
        with capturedLogs() as events:
            scheduler = self.scheduler()
            await self.attempted(message_id, 1)
            await self.finish(scheduler)
        self.assertEqual(servers.session.handshakes, 1)
        [attempt] = [e for e in events if e.get("rail_event") == "delivery.attempt"]
        self.assertEqual(
            {k: attempt[k] for k in ("msg_id", "rcpt", "mx", "address", "result", "attempt")},
            {
                "msg_id": message_id,
                "rcpt": _RECIPIENT,
                "mx": _MX,
                "address": "127.0.0.1",
                "result": "sent",
                "attempt": 1,
            },
        )
        self.assertIn(attempt["tls"], ("TLSv1.2", "TLSv1.3"))
        self.assertEqual(attempt["reply"], "250 2.0.0 Ok: queued as X")
        [final] = [e for e in events if e.get("rail_event") == "delivery.final"]
        self.assertEqual(
            (final["rcpt"], final["result"], final["attempts"]), (_RECIPIENT, "sent", 1)
        )
        self.assertFalse(any("leading dot" in str(e.get("rail_text")) for e in events))

    async def test_refused_connection_logged_with_last_address(self) -> None:
        """When nothing listens, the deferred attempt's line names the host and address
        tried, no TLS version, and Rail's own reply."""
        self.ports[_MX] = await self.unused_port()
        message_id = self.accept()
        with capturedLogs() as events:
            scheduler = self.scheduler()
            await self.attempted(message_id, 1)
            await self.finish(scheduler)
        [attempt] = [e for e in events if e.get("rail_event") == "delivery.attempt"]
        self.assertEqual(
            (attempt["mx"], attempt["address"], attempt["tls"], attempt["result"]),
            (_MX, "127.0.0.1", None, "deferred"),
        )
        self.assertTrue(attempt["reply"].startswith("451 4.4.1 connection refused by 127.0.0.1:"))
        self.assertEqual([e for e in events if e.get("rail_event") == "delivery.final"], [])

    async def unused_port(self) -> int:
        """A loopback port nothing listens on (bound, then closed)."""
        port: Any = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        number = int(port.getHost().port)
        await port.stopListening()
        return number
