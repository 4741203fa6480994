"""MTA-STS (RFC 8461) against real peers: two Postfix MX hosts on loopback for
``dest.test``, its records in a DNS server on loopback, its policy over HTTPS from a
test server whose certificate a test CA signed; Rail is handed that CA with
``delivery.mta_sts.ca_file``, so both the policy host and the MX hosts verify against it.

- ``enforce``, MX certificate valid for its name: delivered, verified (outcome success);
- ``enforce``, MX not listed in the policy: deferred before any connection;
- ``enforce``, certificates with the wrong name or from an unknown CA: deferred
  (``4.7.5``, naming MTA-STS), Postfix never sees a MAIL command, in TLS or plaintext;
- ``testing``, wrong certificate name: delivered, and the failure is reported.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.internet import reactor
from twisted.names import dns
from twisted.trial.unittest import TestCase

from tests.integration.processes import free_port
from tests.interop.outbound import Delivery, PolicyServer, TestCA, wait_until
from tests.support.dnsserver import RunningDNS, start_dns, txt_record
from tests.support.postfix import RunningPostfix, start_postfix

_DOMAIN = "dest.test"
_MX = {"mx1.dest.test": "127.0.0.2", "mx2.dest.test": "127.0.0.3"}


def _policy(mode: str, *mx: str) -> str:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), "max_age: 86400"]
    return "\r\n".join(lines) + "\r\n"


def _accepts(address: str, port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex((address, port)) == 0


class MTASTSInteropTests(TestCase):
    timeout = 120

    async def setUp(self) -> None:  # type: ignore[override]
        self.ca = TestCA.create(Path(self.mktemp()).resolve())
        self.policy = PolicyServer(self, self.ca, _DOMAIN)
        self.dns: RunningDNS = await start_dns(
            reactor,
            {
                _DOMAIN: [
                    dns.Record_MX(10, b"mx1.dest.test", ttl=60),
                    dns.Record_MX(20, b"mx2.dest.test", ttl=60),
                ],
                **{name: [dns.Record_A(address, ttl=60)] for name, address in _MX.items()},
                f"_mta-sts.{_DOMAIN}": [txt_record("v=STSv1; id=20261204a")],
                f"mta-sts.{_DOMAIN}": [dns.Record_A("127.0.0.1", ttl=60)],
            },
        )
        self.addCleanup(self.dns.stop)
        self.port = free_port()

    async def postfix(self, name: str, certificate: tuple[Path, Path]) -> RunningPostfix:
        """A Postfix MX for ``dest.test`` at ``name``'s address, with ``certificate``."""
        running = start_postfix(
            self.port, (_DOMAIN,), name, address=_MX[name], certificate=certificate
        )
        self.addCleanup(running.stop)
        await wait_until(lambda: _accepts(_MX[name], self.port), f"Postfix at {name}", 20)
        return running

    def delivery(self) -> Delivery:
        return Delivery(
            self,
            {
                "hold": False,
                "nameservers": [f"127.0.0.1:{self.dns.port}"],
                "port": self.port,
                "mta_sts": {
                    "ca_file": str(self.ca.ca_file),
                    "port": self.policy.number,
                    "allow_private": True,  # the policy host is on loopback
                },
            },
        )

    async def _sessions_logged(self, postfix: RunningPostfix, count: int) -> None:
        """Wait until Postfix's log (written asynchronously) has ``count`` sessions."""
        await wait_until(
            lambda: len(re.findall(r"\bdisconnect from", self._log(postfix))) >= count,
            f"{count} sessions in {postfix.log}",
        )

    def _log(self, postfix: RunningPostfix) -> str:
        return postfix.log.read_text() if postfix.log.exists() else ""

    async def test_enforce_valid_certificate_delivered_verified(self) -> None:
        """enforce and a certificate valid for the MX name: delivered over TLS to the
        first MX, reported as a verified success under the sts policy; a second message
        uses the cached policy (one HTTPS fetch in all)."""
        self.policy.serve(_policy("enforce", "mx1.dest.test", "*.dest.test"))
        mx1 = await self.postfix("mx1.dest.test", self.ca.issue("mx1.dest.test"))
        delivery = self.delivery()
        first = delivery.send("bob@dest.test")
        row = await delivery.attempted(first)
        self.assertEqual(row.status, "sent", row.last_reply)
        [stored] = await wait_until(mx1.delivered, "the message at mx1")
        self.assertRegex(stored.decode(), r"\(using TLSv1\.[23] with cipher")
        successes = [o for o in delivery.sink.outcomes if o.succeeded]
        self.assertEqual(
            [(o.policy_domain, o.policy_type, o.mx_host) for o in successes],
            [(_DOMAIN, "sts", "mx1.dest.test")],
        )
        self.assertIn("mode: enforce", successes[0].policy_strings)
        second = delivery.send("carol@dest.test")
        self.assertEqual((await delivery.attempted(second)).status, "sent")
        self.assertEqual(self.policy.requests, ["/.well-known/mta-sts.txt"])

    async def test_enforce_unlisted_mx_deferred(self) -> None:
        """enforce with a policy listing neither MX host: deferred (451 4.7.5 naming
        MTA-STS) without a connection to either."""
        self.policy.serve(_policy("enforce", "mx9.dest.test"))
        mx1 = await self.postfix("mx1.dest.test", self.ca.issue("mx1.dest.test"))
        delivery = self.delivery()
        row = await delivery.attempted(delivery.send("bob@dest.test"))
        self.assertEqual(row.status, "deferred")
        assert row.last_reply is not None
        self.assertRegex(row.last_reply, r"^451 4\.7\.5 MTA-STS policy of dest\.test \(enforce\)")
        # One connection: the test's own probe for the port (Postfix logs asynchronously).
        await self._sessions_logged(mx1, 1)
        self.assertEqual(len(re.findall(r"\bconnect from", self._log(mx1))), 1)
        self.assertEqual(mx1.delivered(), [])

    async def test_enforce_bad_certificates_deferred_never_plaintext(self) -> None:
        """enforce; mx1's certificate names another host, mx2's comes from a CA Rail
        does not trust: both fail verification, the recipient is deferred with a 4.7.5
        reply naming MTA-STS, and neither Postfix ever got a MAIL command."""
        self.policy.serve(_policy("enforce", "mx1.dest.test", "mx2.dest.test"))
        stranger = TestCA.create(Path(self.mktemp()).resolve(), "Unknown CA")
        mx1 = await self.postfix("mx1.dest.test", self.ca.issue("other.dest.test"))
        mx2 = await self.postfix("mx2.dest.test", stranger.issue("mx2.dest.test"))
        delivery = self.delivery()
        row = await delivery.attempted(delivery.send("bob@dest.test"))
        self.assertEqual(row.status, "deferred")
        assert row.last_reply is not None
        self.assertRegex(row.last_reply, r"^451 4\.7\.5 MTA-STS policy of dest\.test \(enforce\)")
        failures = {(o.mx_host, o.result) for o in delivery.sink.outcomes}
        self.assertEqual(
            failures,
            {
                ("mx1.dest.test", "certificate-host-mismatch"),
                ("mx2.dest.test", "certificate-not-trusted"),
            },
        )
        for postfix in (mx1, mx2):
            await self._sessions_logged(postfix, 2)  # the test's probe and Rail's session
            log = self._log(postfix)
            self.assertNotRegex(log, r"mail=|from=<")
            self.assertEqual(postfix.delivered(), [])

    async def test_testing_mode_delivers_and_reports(self) -> None:
        """testing with a certificate for another name: delivered anyway (over TLS),
        and the host mismatch is reported as a TLS outcome."""
        self.policy.serve(_policy("testing", "mx1.dest.test"))
        mx1 = await self.postfix("mx1.dest.test", self.ca.issue("other.dest.test"))
        delivery = self.delivery()
        row = await delivery.attempted(delivery.send("bob@dest.test"))
        self.assertEqual(row.status, "sent", row.last_reply)
        [stored] = await wait_until(mx1.delivered, "the message at mx1")
        self.assertRegex(stored.decode(), r"\(using TLSv1\.[23] with cipher")
        [outcome] = delivery.sink.outcomes
        self.assertEqual(
            (outcome.policy_type, outcome.mx_host, outcome.receiving_ip, outcome.result),
            ("sts", "mx1.dest.test", "127.0.0.2", "certificate-host-mismatch"),
        )
        self.assertIn("mode: testing", outcome.policy_strings)
