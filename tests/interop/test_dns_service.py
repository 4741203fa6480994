"""BIND's ``dig`` against the DNS service of a real ``twistd rail``: the wiring of
``listen.dns`` in :func:`rail.service.build_service` and of the SIGHUP reload hook.

tests/interop/test_dns.py checks the DNS server itself in the test's reactor; here Rail
runs as a child process started from ``rail init --dev``, whose ``listen.dns`` serves the
``rail.test`` zone on one port number over UDP and TCP. ``rail dkim`` runs as a real CLI
process on the same data directory, and dig runs as a child process too, so the reactor
keeps running while it waits.
"""

from __future__ import annotations

import re
import shutil

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests.integration.processes import rail, run, wait_for_port
from tests.interop.helpers import RunningRail, start_rail
from tests.interop.test_dns import _flags, _section, _status
from tests.support.tools import need_tool

DIG = shutil.which("dig")
ZONE = "rail.test"
_TRANSPORTS = ("+notcp", "+tcp")
# Well below the DNS service's 60-second periodic zone refresh, so that what changes
# within it was the SIGHUP's doing.
_RELOAD_WAIT = 15.0


def _dkim_records(output: str) -> dict[str, list[str]]:
    """``rail dkim show`` output: selector to record lines (whitespace collapsed)."""
    records: dict[str, list[str]] = {}
    for line in output.splitlines():
        match = re.match(r"^([^.\s;]+)\._domainkey\.", line)
        if match is not None:
            records.setdefault(match[1], []).append(" ".join(line.split()))
    return records


def _serial(output: str) -> int:
    """The serial of the single SOA record in dig's ANSWER section."""
    (soa,) = _section(output, "ANSWER")
    fields = soa.split()
    assert fields[3] == "SOA", soa
    return int(fields[6])


class DNSServiceTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        need_tool("dig", "bind9-dnsutils")

    async def _start(self) -> RunningRail:
        running: RunningRail = await start_rail(self)
        spec = running.config.listen.dns
        assert spec is not None
        self.dns_port = spec.port
        await wait_for_port(self.dns_port, running.server)
        return running

    async def dig(self, *args: str) -> str:
        assert DIG is not None
        out, err, code = await run(
            DIG, "@127.0.0.1", "-p", str(self.dns_port), "+norec", "+time=3", "+tries=1", *args
        )
        self.assertEqual(code, 0, (args, out, err))
        text: str = out.decode()
        return text

    async def dkim_show(self, running: RunningRail) -> dict[str, list[str]]:
        out, err, code = await rail(
            "dkim", "show", "--config", str(running.directory / "rail.yaml")
        )
        self.assertEqual(code, 0, err)
        records = _dkim_records(out.decode())
        self.assertTrue(records, out)
        return records

    async def test_zone_served_over_udp_and_tcp(self) -> None:
        """twistd rail answers for its local domain on ``listen.dns``, over UDP and TCP at
        the same port number: MX, TXT (SPF) and SOA with the ``aa`` flag and no recursion,
        and each DKIM selector's TXT record exactly as ``rail dkim show`` prints it."""
        running = await self._start()
        keys = await self.dkim_show(running)
        self.assertEqual(len(keys), 2, keys)  # an ed25519 and an RSA selector
        for transport in _TRANSPORTS:
            mx = await self.dig(transport, ZONE, "MX")
            self.assertEqual(_status(mx), "NOERROR", (transport, mx))
            self.assertIn("aa", _flags(mx))
            self.assertNotIn("ra", _flags(mx))
            (record,) = _section(mx, "ANSWER")
            self.assertRegex(record, r"^rail\.test\. \d+ IN MX \d+ rail\.test\.$")

            txt = await self.dig(transport, ZONE, "TXT")
            self.assertEqual(_status(txt), "NOERROR", (transport, txt))
            self.assertIn("aa", _flags(txt))
            self.assertTrue(
                any('"v=spf1 ' in line for line in _section(txt, "ANSWER")), (transport, txt)
            )

            soa = await self.dig(transport, ZONE, "SOA")
            self.assertIn("aa", _flags(soa))
            self.assertRegex(_section(soa, "ANSWER")[0], r"^rail\.test\. \d+ IN SOA rail\.test\. ")
            self.assertGreater(_serial(soa), 0)

            for selector, lines in keys.items():
                answer = await self.dig(transport, f"{selector}._domainkey.{ZONE}", "TXT")
                self.assertEqual(_status(answer), "NOERROR", (transport, selector, answer))
                self.assertIn("aa", _flags(answer))
                self.assertEqual(_section(answer, "ANSWER"), lines, (transport, selector))

    async def test_rotation_served_after_sighup(self) -> None:
        """After ``rail dkim rotate`` the running server still serves the old zone; a
        SIGHUP makes it serve the new selectors' TXT records (as ``rail dkim show`` prints
        them), drop the old ones (nothing is queued that they could have signed) and raise
        the SOA serial, over UDP and TCP, without a restart."""
        running = await self._start()
        config = str(running.directory / "rail.yaml")
        old = await self.dkim_show(running)
        serial_before = _serial(await self.dig(ZONE, "SOA"))

        out, err, code = await rail("dkim", "rotate", "--config", config, ZONE)
        self.assertEqual(code, 0, err)
        new = await self.dkim_show(running)
        self.assertEqual(len(new), 2, new)
        self.assertFalse(set(new) & set(old), (old, new))
        probe = f"{sorted(new)[0]}._domainkey.{ZONE}"
        # Not before the signal: the server does not pick up the rotation by itself.
        self.assertEqual(_status(await self.dig(probe, "TXT")), "NXDOMAIN")

        running.server.signal("HUP")
        waited = 0.0
        while _status(await self.dig(probe, "TXT")) != "NOERROR":
            if running.server.ended.called or waited >= _RELOAD_WAIT:
                self.fail(
                    f"{probe} not served {waited:.1f}s after SIGHUP:\n"
                    + running.server.output.decode(errors="replace")
                )
            await deferLater(reactor, 0.2, lambda: None)
            waited += 0.2

        for transport in _TRANSPORTS:
            for selector, lines in new.items():
                answer = await self.dig(transport, f"{selector}._domainkey.{ZONE}", "TXT")
                self.assertIn("aa", _flags(answer))
                self.assertEqual(_section(answer, "ANSWER"), lines, (transport, selector))
            for selector in old:
                gone = await self.dig(transport, f"{selector}._domainkey.{ZONE}", "TXT")
                self.assertEqual(_status(gone), "NXDOMAIN", (transport, selector))
                self.assertIn("aa", _flags(gone))
            soa = await self.dig(transport, ZONE, "SOA")
            self.assertIn("aa", _flags(soa))
            self.assertGreater(_serial(soa), serial_before, transport)
        self.assertFalse(running.server.ended.called)
        self.assertIn(b"reload done", running.server.output)
