"""Rail relays through a provider-like submission service: a real Postfix on loopback
with SASL by a real Dovecot, a certificate for ``relay.test`` from a test CA that Rail
is given with ``delivery.smarthost.ca_file``.

Port 587-style (STARTTLS required) and 465-style (TLS from the first byte) both deliver
after AUTH; Postfix records the login (``sasl_username``, and the ``Authenticated
sender`` in the Received header). A wrong password defers the mail (``451 4.7.8``),
never bounces it.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.names import dns
from twisted.trial.unittest import TestCase

from tests.integration.processes import free_port
from tests.interop.outbound import Delivery, TestCA, wait_until
from tests.support.dnsserver import start_dns
from tests.support.dovecot import start_dovecot
from tests.support.postfix import RunningPostfix, Submission, start_postfix

_USER, _PASSWORD = "relay", "s3cret-Passw0rd"


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class SmarthostAuthTests(TestCase):
    timeout = 120

    async def setUp(self) -> None:  # type: ignore[override]
        directory = Path(self.mktemp()).resolve()
        self.ca = TestCA.create(directory / "ca")
        self.dns = await start_dns(reactor, {"relay.test": [dns.Record_A("127.0.0.1", ttl=60)]})
        self.addCleanup(self.dns.stop)
        dovecot = start_dovecot({_USER: _PASSWORD})
        self.addCleanup(dovecot.stop)
        await wait_until(dovecot.auth_socket.exists, "Dovecot's auth socket", 20)
        self.submission = Submission(dovecot.auth_socket, free_port(), free_port())
        self.postfix: RunningPostfix = start_postfix(
            free_port(),
            ("dest.test",),
            "relay.test",
            certificate=self.ca.issue("relay.test"),
            submission=self.submission,
        )
        self.addCleanup(self.postfix.stop)
        for port in (self.submission.starttls_port, self.submission.implicit_port):
            await wait_until(lambda port=port: _accepts(port), "Postfix submission", 20)
        self.password_file = directory / "password"
        self.password_file.write_text(_PASSWORD + "\n")

    def delivery(self, tls: str, port: int, password_file: Path | None = None) -> Delivery:
        smarthost: dict[str, Any] = {
            "host": "relay.test",
            "port": port,
            "tls": tls,
            "ca_file": str(self.ca.ca_file),
            "auth": {
                "username": _USER,
                "password_file": str(password_file or self.password_file),
            },
        }
        return Delivery(
            self,
            {
                "hold": False,
                "nameservers": [f"127.0.0.1:{self.dns.port}"],
                "smarthost": smarthost,
            },
        )

    def _log(self) -> str:
        return self.postfix.log.read_text() if self.postfix.log.exists() else ""

    async def _delivered_with_auth(self, delivery: Delivery) -> None:
        row = await delivery.attempted(delivery.send("bob@dest.test"))
        self.assertEqual(row.status, "sent", f"{row.last_reply}\n{self._log()}")
        [stored] = await wait_until(self.postfix.delivered, "the relayed message")
        text = stored.decode()
        self.assertIn(f"(Authenticated sender: {_USER})", text)
        self.assertRegex(text, r"\(using TLSv1\.[23] with cipher")
        # Postfix writes its log asynchronously.
        await wait_until(
            lambda: re.search(rf"sasl_method=PLAIN, sasl_username={_USER}\b", self._log()),
            "the login in Postfix's log",
        )

    async def test_starttls_submission_with_auth(self) -> None:
        """tls: required on the STARTTLS port: verified TLS, AUTH PLAIN, delivered."""
        await self._delivered_with_auth(self.delivery("required", self.submission.starttls_port))

    async def test_implicit_tls_with_auth(self) -> None:
        """tls: implicit on the wrapper-mode port (465-style): delivered after AUTH."""
        await self._delivered_with_auth(self.delivery("implicit", self.submission.implicit_port))

    async def test_wrong_password_deferred(self) -> None:
        """A refused login defers the mail with a local 451 4.7.8 naming the relay;
        nothing is delivered and nothing bounces."""
        wrong = Path(self.mktemp()).resolve()
        wrong.write_text("not-the-password\n")
        delivery = self.delivery("required", self.submission.starttls_port, wrong)
        row = await delivery.attempted(delivery.send("bob@dest.test"))
        self.assertEqual(row.status, "deferred")
        assert row.last_reply is not None
        self.assertRegex(
            row.last_reply, r"^451 4\.7\.8 relay relay\.test refused authentication: 535"
        )
        self.assertEqual(self.postfix.delivered(), [])
        self.assertEqual(len(delivery.store.messages), 1)  # no DSN queued
