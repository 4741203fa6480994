"""BIND's ``dig`` and ``named-checkzone`` against Rail's DNS server on loopback.

The server runs in the test's reactor on real UDP and TCP sockets (the same
:class:`~rail.dns.service.DNSService` ``twistd rail`` runs); dig runs as a child process,
so the reactor keeps serving while it waits. Each check is made over UDP and over TCP.
"""

from __future__ import annotations

import re
import shutil
import socket
import struct
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.names import dns
from twisted.trial.unittest import TestCase

from rail.config.listen import ListenSpec
from rail.dkim.records import PublishedKey
from rail.dns.server import DNSServer
from rail.dns.service import DNSService
from rail.dns.zone import build_zones
from tests.dns.helpers import CONFIG, ED25519, HOSTNAME, LONG, RSA, UDPClient, query_bytes
from tests.integration.processes import rail, run
from tests.support.tools import need_root, need_tool

DIG = shutil.which("dig")
CHECKZONE = shutil.which("named-checkzone")
_MANY = [PublishedKey(f"many{i}", "ed25519", ED25519.txt) for i in range(12)]

_CONFIG_YAML = """\
hostname: mail.example.com
data_dir: data
local_domains: [example.com, example.org]
tls:
  self_signed: true
dns:
  ipv4: ["192.0.2.10"]
  ipv6: ["2001:db8::10"]
  nameservers: [mail.example.com, ns2.example.com]
  spf_include: ["include:_spf.example.net"]
  dmarc_rua: "mailto:dmarc@example.com"
  tls_rpt: "mailto:tls@example.com"
  caa: [letsencrypt.org]
"""


def _flags(output: str) -> set[str]:
    match = re.search(r";; flags: ([a-z ]*);", output)
    assert match is not None, output
    return set(match[1].split())


def _status(output: str) -> str:
    match = re.search(r"status: ([A-Z]+)", output)
    assert match is not None, output
    return match[1]


def _section(output: str, name: str) -> list[str]:
    """The record lines of one section of dig's output, whitespace collapsed."""
    match = re.search(rf";; {name} SECTION:\n(.*?)(?:\n\n|\Z)", output, re.S)
    if match is None:
        return []
    return [" ".join(line.split()) for line in match[1].splitlines() if line.strip()]


class DigTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        need_tool("dig", "bind9-dnsutils")
        keys = {"example.com": [ED25519, RSA, LONG, *_MANY], "example.org": [ED25519]}
        zones = build_zones(["example.com", "example.org"], HOSTNAME, CONFIG, keys)
        self.server = DNSServer(zones, reactor)
        self.service = DNSService(
            reactor, ListenSpec("tcp", 0, "127.0.0.1"), self.server, refresh_interval=None
        )
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service.stopService)

    async def dig(self, *args: str) -> str:
        assert DIG is not None
        out, err, code = await run(
            DIG, "@127.0.0.1", "-p", str(self.service.port), "+norec", "+time=3", "+tries=1", *args
        )
        self.assertEqual(code, 0, err)
        text: str = out.decode()
        return text

    async def test_every_type(self) -> None:
        """SOA, NS, MX, TXT (SPF, DKIM, DMARC, MTA-STS, TLS-RPT), A, AAAA and CAA answer
        with aa, over UDP and over TCP, with the configured TTL."""
        expected = {
            ("example.com", "SOA"): "example.com. 300 IN SOA mail.example.com. "
            "hostmaster.example.com. 1 3600 900 1209600 300",
            ("example.com", "NS"): "example.com. 300 IN NS mail.example.com.",
            ("example.org", "MX"): "example.org. 300 IN MX 10 mail.example.com.",
            ("example.org", "TXT"): 'example.org. 300 IN TXT "v=spf1 mx ip4:192.0.2.10 '
            'ip6:2001:db8::10 include:_spf.example.net -all"',
            ("mail.example.com", "A"): "mail.example.com. 300 IN A 192.0.2.10",
            ("mail.example.com", "AAAA"): "mail.example.com. 300 IN AAAA 2001:db8::10",
            ("mta-sts.example.org", "A"): "mta-sts.example.org. 300 IN A 192.0.2.10",
            ("example.org", "CAA"): 'example.org. 300 IN CAA 0 issue "letsencrypt.org"',
            ("_dmarc.example.org", "TXT"): '_dmarc.example.org. 300 IN TXT "v=DMARC1; '
            'p=reject; rua=mailto:dmarc@example.com"',
            ("_smtp._tls.example.org", "TXT"): '_smtp._tls.example.org. 300 IN TXT "v=TLSRPTv1; '
            'rua=mailto:tls@example.com"',
            (
                "s1e._domainkey.example.org",
                "TXT",
            ): f's1e._domainkey.example.org. 300 IN TXT "{ED25519.txt}"',
        }
        for transport in ("+notcp", "+tcp"):
            for (name, rtype), line in expected.items():
                output = await self.dig(transport, name, rtype)
                self.assertEqual(_status(output), "NOERROR", (transport, name))
                self.assertIn("aa", _flags(output))
                self.assertNotIn("ra", _flags(output))
                self.assertEqual(_section(output, "ANSWER"), [line], (transport, name, rtype))
            sts = await self.dig(transport, "_mta-sts.example.org", "TXT")
            self.assertRegex(_section(sts, "ANSWER")[0], r'"v=STSv1; id=[0-9a-f]{20}"$')
            rsa = await self.dig(transport, "+short", "s1r._domainkey.example.com", "TXT")
            self.assertEqual(rsa.strip(), '"' + '" "'.join([RSA.txt[:255], RSA.txt[255:]]) + '"')

    async def test_nxdomain(self) -> None:
        """NXDOMAIN comes with aa and the SOA in the authority section; NODATA too."""
        for transport in ("+notcp", "+tcp"):
            output = await self.dig(transport, "nope.example.com", "A")
            self.assertEqual(_status(output), "NXDOMAIN")
            self.assertIn("aa", _flags(output))
            (soa,) = _section(output, "AUTHORITY")
            self.assertRegex(soa, r"^example\.com\. 300 IN SOA ")
            nodata = await self.dig(transport, "_dmarc.example.com", "MX")
            self.assertEqual((_status(nodata), _section(nodata, "ANSWER")), ("NOERROR", []))
            self.assertIn("aa", _flags(nodata))
            self.assertEqual(len(_section(nodata, "AUTHORITY")), 1)

    async def test_refused(self) -> None:
        """Names outside the zones, over UDP and TCP, are REFUSED without aa."""
        for transport in ("+notcp", "+tcp"):
            output = await self.dig(transport, "example.net", "A")
            self.assertEqual(_status(output), "REFUSED")
            self.assertNotIn("aa", _flags(output))

    async def test_large_answer(self) -> None:
        """A large TXT answer comes back truncated over UDP without EDNS (tc, no
        records) and whole over TCP; dig's default retry over TCP gets it too."""
        udp = await self.dig("+ignore", "+noedns", "big._domainkey.example.com", "TXT")
        self.assertIn("tc", _flags(udp))
        self.assertEqual(_section(udp, "ANSWER"), [])
        tcp = await self.dig("+tcp", "+short", "big._domainkey.example.com", "TXT")
        self.assertEqual(tcp.strip().replace('" "', "").strip('"'), LONG.txt)
        retried = await self.dig("+noedns", "big._domainkey.example.com", "TXT")
        self.assertIn("Truncated, retrying in TCP mode", retried)
        self.assertEqual(len(_section(retried, "ANSWER")), 1)

    async def test_edns(self) -> None:
        """dig's EDNS query gets an OPT record back advertising 1232 octets."""
        output = await self.dig("example.com", "SOA")
        self.assertIn("; EDNS: version: 0, flags:; udp: 1232", output)

    async def test_any(self) -> None:
        """ANY gets the RFC 8482 HINFO record only."""
        output = await self.dig("example.com", "ANY")
        self.assertEqual(_section(output, "ANSWER"), ['example.com. 300 IN HINFO "RFC8482" ""'])

    async def test_axfr_refused(self) -> None:
        """A zone transfer is refused."""
        output = await self.dig("example.com", "AXFR")
        self.assertIn("Transfer failed", output)

    async def test_response_gets_no_answer(self) -> None:
        """A packet with QR=1 is dropped: the next datagram the client gets answers the
        query it sent afterwards."""
        client = UDPClient(self.service.port)
        port = reactor.listenUDP(0, client, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        response = dns.Message(id=1, answer=1)
        response.addQuery(b"example.com", dns.SOA)
        client.send(response.toStr())
        answer = await client.ask(query_bytes("example.com", dns.SOA, message_id=2))
        self.assertEqual(answer.id, 2)
        await deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(client.received, [])
        self.assertEqual(self.server.counts["dropped"], 1)

    async def test_spoofed_own_address(self) -> None:
        """A query whose source is the server's own address and port (sent through a raw
        socket) is dropped: no packet loop starts, and the server keeps answering."""
        try:
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        except PermissionError:
            need_root("spoofing a source address (a raw socket)")
            raise
        self.addCleanup(raw.close)
        port = self.service.port
        payload = query_bytes("example.com", dns.SOA)
        udp = struct.pack("!HHHH", port, port, 8 + len(payload), 0) + payload
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            1,
            0,
            64,
            socket.IPPROTO_UDP,
            0,
            socket.inet_aton("127.0.0.1"),
            socket.inet_aton("127.0.0.1"),
        )
        raw.sendto(ip + udp, ("127.0.0.1", 0))
        for _ in range(50):
            if self.server.counts["dropped"]:
                break
            await deferLater(reactor, 0.02, lambda: None)
        await deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(dict(self.server.counts), {"dropped": 1})
        output = await self.dig("example.com", "SOA")
        self.assertEqual(_status(output), "NOERROR")


class CheckZoneTests(TestCase):
    timeout = 60

    async def test_named_checkzone(self) -> None:
        """named-checkzone accepts every zone ``rail dns records`` prints."""
        need_tool("named-checkzone", "bind9-utils")
        directory = Path(self.mktemp()).absolute()
        directory.mkdir(parents=True)
        config = directory / "rail.yaml"
        config.write_text(_CONFIG_YAML)
        for domain in ("example.com", "example.org"):
            out, err, code = await rail(
                "dns", "records", "--config", str(config), "--domain", domain
            )
            self.assertEqual(code, 0, err)
            zone = directory / f"{domain}.zone"
            zone.write_bytes(out)
            checked: Any = await run(CHECKZONE, domain, str(zone))
            self.assertEqual(checked[2], 0, checked[0].decode() + checked[1].decode())
            self.assertIn(b"OK", checked[0])
