"""Rail's DNS server on real UDP and TCP sockets on 127.0.0.1, through raw messages."""

from __future__ import annotations

import socket
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import Clock
from twisted.names import dns
from twisted.trial.unittest import SynchronousTestCase, TestCase

from rail.config.listen import ListenSpec
from rail.dkim.records import PublishedKey
from rail.dns.protocol import DNSUDP
from rail.dns.ratelimit import RateLimiter
from rail.dns.server import DNSServer
from rail.dns.service import DNSService
from rail.dns.zone import build_zones
from rail.refusals import Refusals
from tests.dns.helpers import (
    CONFIG,
    HOSTNAME,
    LONG,
    TCPClient,
    UDPClient,
    opt_of,
    parse,
    query_bytes,
    zones,
)

_BIG = PublishedKey("huge", "rsa", "v=DKIM1; k=rsa; p=" + "D" * 1500)


class _ServerCase(TestCase):
    timeout = 20

    def start(self, server: DNSServer | None = None, clock: Any = None) -> DNSService:
        self.server = server if server is not None else DNSServer(zones(), reactor)
        service = DNSService(
            reactor,
            ListenSpec("tcp", 0, "127.0.0.1"),
            self.server,
            refresh_interval=None,
            clock=clock,
        )
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        self.service = service
        return service

    def udp(self) -> UDPClient:
        client = UDPClient(self.service.port)
        port = reactor.listenUDP(0, client, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return client

    async def tcp(self) -> TCPClient:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.service.port)
        client = await connectProtocol(endpoint, TCPClient())

        async def close() -> None:
            if not client.lost.called:
                assert client.transport is not None
                client.transport.loseConnection()
                await client.lost

        self.addCleanup(close)
        return client


class AnswerTests(_ServerCase):
    def setUp(self) -> None:
        self.start()

    async def test_udp_answer(self) -> None:
        """An in-zone answer over UDP: id echoed, QR and AA set, RA clear, RD copied."""
        response = await self.udp().ask(query_bytes("example.com", dns.MX, message_id=77))
        self.assertEqual(response.id, 77)
        self.assertEqual(
            (response.answer, response.auth, response.recAv, response.recDes, response.rCode),
            (1, 1, 0, 1, dns.OK),
        )
        (mx,) = response.answers
        self.assertEqual((mx.payload.preference, mx.payload.name.name), (10, HOSTNAME.encode()))
        self.assertEqual(mx.ttl, 300)
        self.assertEqual({r.type for r in response.additional}, {dns.A, dns.AAAA})

    async def test_tcp_answer(self) -> None:
        """The same answers over TCP, several on one connection."""
        client = await self.tcp()
        first = await client.ask(query_bytes("example.org", dns.TXT, message_id=1))
        second = await client.ask(query_bytes("mail.example.com", dns.AAAA, message_id=2))
        self.assertEqual(
            (first.id, first.auth, first.answers[0].payload.data[0][:6]), (1, 1, b"v=spf1")
        )
        address = socket.inet_ntop(socket.AF_INET6, second.answers[0].payload.address)
        self.assertEqual(address, "2001:db8::10")

    async def test_case_insensitive(self) -> None:
        """Names match whatever their case; the answer echoes the question's spelling."""
        response = await self.udp().ask(query_bytes("ExAmPle.COM", dns.MX))
        self.assertEqual(response.rCode, dns.OK)
        self.assertEqual(response.answers[0].name.name, b"ExAmPle.COM")
        self.assertEqual(response.queries[0].name.name, b"ExAmPle.COM")

    async def test_nxdomain(self) -> None:
        """NXDOMAIN is authoritative and carries the SOA, TTL = SOA minimum."""
        response = await self.udp().ask(query_bytes("nope.example.com", dns.A))
        self.assertEqual((response.rCode, response.auth, response.answers), (dns.ENAME, 1, []))
        (soa,) = response.authority
        self.assertEqual((soa.type, soa.ttl, soa.payload.minimum), (dns.SOA, 300, 300))

    async def test_nodata(self) -> None:
        """NODATA is NOERROR, authoritative, no answer, the SOA in authority."""
        response = await self.udp().ask(query_bytes("_dmarc.example.com", dns.MX))
        self.assertEqual((response.rCode, response.auth, response.answers), (dns.OK, 1, []))
        self.assertEqual([r.type for r in response.authority], [dns.SOA])

    async def test_refused(self) -> None:
        """A name outside the zones is REFUSED, without AA and without records."""
        response = await self.udp().ask(query_bytes("example.net", dns.A))
        self.assertEqual((response.rCode, response.auth), (dns.EREFUSED, 0))
        self.assertEqual(response.answers + response.authority, [])

    async def test_any(self) -> None:
        """ANY gets the single HINFO "RFC8482" record."""
        response = await self.udp().ask(query_bytes("example.com", dns.ALL_RECORDS))
        (hinfo,) = response.answers
        self.assertEqual(
            (hinfo.type, hinfo.payload.cpu, hinfo.payload.os), (dns.HINFO, b"RFC8482", b"")
        )

    async def test_axfr_refused(self) -> None:
        """AXFR (over TCP, where transfers run) and IXFR are REFUSED."""
        client = await self.tcp()
        self.assertEqual(
            (await client.ask(query_bytes("example.com", dns.AXFR))).rCode, dns.EREFUSED
        )
        self.assertEqual(
            (await client.ask(query_bytes("example.com", dns.IXFR))).rCode, dns.EREFUSED
        )

    async def test_caa(self) -> None:
        """CAA is encoded as RFC 8659 rdata: flags, tag length, tag, value."""
        response = await self.udp().ask(query_bytes("example.com", 257))
        self.assertEqual(response.answers[0].payload.data, b"\x00\x05issueletsencrypt.org")

    async def test_update(self) -> None:
        """update() replaces the zones without restarting."""
        client = self.udp()
        self.assertEqual(
            (await client.ask(query_bytes("example.com", dns.SOA))).answers[0].payload.serial, 7
        )
        self.service.update(zones(serial=8))
        self.assertEqual(
            (await client.ask(query_bytes("example.com", dns.SOA))).answers[0].payload.serial, 8
        )
        self.service.update(zones()[1:])
        self.assertEqual(
            (await client.ask(query_bytes("example.com", dns.SOA))).rCode, dns.EREFUSED
        )


class SizeTests(_ServerCase):
    def setUp(self) -> None:
        keys = {"example.com": [_BIG], "example.org": [LONG]}
        self.start(
            DNSServer(build_zones(["example.com", "example.org"], HOSTNAME, CONFIG, keys), reactor)
        )

    async def test_no_edns_truncated(self) -> None:
        """Without OPT the limit is 512: a larger answer comes back empty with TC=1, and
        no OPT is added."""
        response = await self.udp().ask(query_bytes("big._domainkey.example.org", dns.TXT))
        self.assertEqual((response.trunc, response.answers, response.auth), (1, [], 1))
        self.assertIsNone(opt_of(response))

    async def test_edns_buffer_honoured(self) -> None:
        """The client's buffer size is honoured: 1232 fits the 800-octet answer, 600 does
        not; OPT is echoed with Rail's own size."""
        client = self.udp()
        whole = await client.ask(query_bytes("big._domainkey.example.org", dns.TXT, edns=1232))
        self.assertEqual((whole.trunc, len(whole.answers)), (0, 1))
        opt = opt_of(whole)
        assert opt is not None
        self.assertEqual((opt.cls, opt.ttl), (1232, 0))
        small = await client.ask(query_bytes("big._domainkey.example.org", dns.TXT, edns=600))
        self.assertEqual((small.trunc, small.answers), (1, []))
        self.assertIsNotNone(opt_of(small))

    async def test_udp_capped(self) -> None:
        """Rail never sends more than 1232 octets over UDP, whatever the client offers."""
        client = self.udp()
        client.send(query_bytes("huge._domainkey.example.com", dns.TXT, edns=4096))
        data = await client.next()
        self.assertLessEqual(len(data), 1232)
        self.assertEqual(parse(data).trunc, 1)

    async def test_tiny_buffer_means_512(self) -> None:
        """A buffer size below 512 counts as 512 (RFC 6891 §6.2.5)."""
        response = await self.udp().ask(query_bytes("example.com", dns.SOA, edns=100))
        self.assertEqual((response.trunc, len(response.answers)), (0, 1))

    async def test_tcp_whole(self) -> None:
        """Over TCP the large answers come whole."""
        client = await self.tcp()
        response = await client.ask(query_bytes("huge._domainkey.example.com", dns.TXT))
        self.assertEqual((response.trunc, len(response.answers)), (0, 1))
        self.assertEqual(b"".join(response.answers[0].payload.data), _BIG.txt.encode())

    async def test_badvers(self) -> None:
        """EDNS version 1 is answered BADVERS (extended rcode 16) with an OPT of version 0."""
        response = await self.udp().ask(query_bytes("example.com", dns.SOA, edns=1232, version=1))
        opt = opt_of(response)
        assert opt is not None
        self.assertEqual((response.rCode, opt.ttl >> 24, (opt.ttl >> 16) & 0xFF), (0, 1, 0))
        self.assertEqual(response.answers, [])


class DropTests(_ServerCase):
    """Packets that get no answer: the next datagram the client receives answers the
    query sent after them, so the test never waits for a silence."""

    def setUp(self) -> None:
        self.start()

    async def _dropped(self, packet: bytes) -> None:
        client = self.udp()
        client.send(packet)
        response = await client.ask(query_bytes("example.com", dns.SOA, message_id=999))
        self.assertEqual(response.id, 999)
        self.assertEqual(client.received, [])
        self.assertEqual(self.server.counts["dropped"], 1)

    async def test_response_dropped(self) -> None:
        """A packet with QR=1 (a response, or a spoofed loop) gets no answer."""
        message = dns.Message(id=5, answer=1)
        message.addQuery(b"example.com", dns.SOA)
        await self._dropped(message.toStr())

    async def test_unknown_opcode_notimp(self) -> None:
        """An unassigned opcode (3) is answered NOTIMP, header only (RFC 8906)."""
        response = await self.udp().ask(query_bytes("example.com", dns.SOA, opcode=3))
        self.assertEqual((response.rCode, response.opCode), (dns.ENOTIMP, 3))
        self.assertEqual(response.queries, [])

    async def test_malformed_dropped(self) -> None:
        """Bytes that do not decode to what the header announces get no answer."""
        await self._dropped(query_bytes("example.com", dns.SOA)[:-3])

    async def test_short_dropped(self) -> None:
        """A datagram shorter than a header gets no answer."""
        await self._dropped(b"\x00\x01\x00")

    async def test_notify_notimp(self) -> None:
        """NOTIFY (a known opcode Rail does not implement) is answered NOTIMP."""
        response = await self.udp().ask(query_bytes("example.com", dns.SOA, opcode=dns.OP_NOTIFY))
        self.assertEqual((response.rCode, response.opCode), (dns.ENOTIMP, dns.OP_NOTIFY))

    async def test_two_questions_formerr(self) -> None:
        """A query with two questions is FORMERR."""
        message = dns.Message(id=6)
        message.addQuery(b"example.com", dns.SOA)
        message.addQuery(b"example.org", dns.SOA)
        response = await self.udp().ask(message.toStr())
        self.assertEqual(response.rCode, dns.EFORMAT)

    async def test_tcp_response_closes(self) -> None:
        """Over TCP, a message that gets no answer closes the connection."""
        client = await self.tcp()
        client.sendString(dns.Message(id=5, answer=1).toStr())
        await client.lost
        self.assertEqual(client.received, [])


class OwnAddressTests(SynchronousTestCase):
    def _protocol(self, interface: str) -> tuple[DNSUDP, list[Any]]:
        sent: list[Any] = []

        @attrs.define
        class Transport:
            def getHost(self) -> IPv4Address:
                return IPv4Address("UDP", interface, 5353)

            def write(self, data: bytes, addr: Any) -> None:
                sent.append(addr)

        protocol = DNSUDP(DNSServer(zones(), Clock()))
        protocol.makeConnection(Transport())
        return protocol, sent

    def test_own_address_dropped(self) -> None:
        """A query that claims to come from the server's own address and port is dropped
        (no CVE-2024-2169 loop); another port on the same address is answered."""
        protocol, sent = self._protocol("127.0.0.1")
        protocol.datagramReceived(query_bytes("example.com"), ("127.0.0.1", 5353))
        self.assertEqual(sent, [])
        protocol.datagramReceived(query_bytes("example.com"), ("127.0.0.1", 5354))
        self.assertEqual(sent, [("127.0.0.1", 5354)])

    def test_wildcard_loopback_dropped(self) -> None:
        """Bound to every address, loopback sources on the server's port are dropped,
        while another host's port 53 is not (some resolvers query from port 53)."""
        protocol, sent = self._protocol("0.0.0.0")  # noqa: S104
        protocol.datagramReceived(query_bytes("example.com"), ("127.0.0.2", 5353))
        protocol.datagramReceived(query_bytes("example.com"), ("192.0.2.1", 5353))
        self.assertEqual(sent, [("192.0.2.1", 5353)])

    def test_port_zero_dropped(self) -> None:
        """Source port 0 cannot be a real client: dropped."""
        protocol, sent = self._protocol("127.0.0.1")
        protocol.datagramReceived(query_bytes("example.com"), ("192.0.2.1", 0))
        self.assertEqual(sent, [])


class RateLimitTests(_ServerCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.refusals = Refusals(self.clock)
        self.start(DNSServer(zones(), self.clock, RateLimiter(2, 2), refusals=self.refusals))

    async def test_udp_limited_with_slip(self) -> None:
        """Over the budget, UDP answers are dropped with every second one sent truncated;
        a second later answers flow again."""
        client = self.udp()
        for i in range(4):
            client.send(query_bytes("example.com", dns.SOA, message_id=i))
        responses = [parse(await client.next()) for _ in range(3)]
        self.assertEqual([(r.id, r.trunc) for r in responses], [(0, 0), (1, 0), (3, 1)])
        self.assertEqual(responses[2].answers, [])
        self.assertEqual(
            (self.server.counts["rate-limited"], self.server.counts["slipped"]), (1, 1)
        )
        self.assertEqual(
            (
                self.refusals.counts[("dns", "rate_limited")],
                self.refusals.counts[("dns", "rate_slipped")],
            ),
            (1, 1),
        )
        self.clock.advance(1)
        again = await client.ask(query_bytes("example.com", dns.SOA, message_id=9))
        self.assertEqual((again.id, again.trunc, len(again.answers)), (9, 0, 1))

    async def test_different_questions_not_limited(self) -> None:
        """Different questions from one client are different responses, each with its
        own budget: a resolver asking for many names is answered in full."""
        client = self.udp()
        questions = [
            ("example.com", dns.SOA),
            ("example.com", dns.MX),
            ("example.com", dns.TXT),
            ("example.org", dns.MX),
            ("mail.example.com", dns.A),
            ("mail.example.com", dns.AAAA),
            ("_dmarc.example.com", dns.TXT),
            ("mta-sts.example.org", dns.A),
        ]
        for i, (name, rtype) in enumerate(questions * 2):
            response = await client.ask(query_bytes(name, rtype, message_id=i))
            self.assertEqual((response.id, response.trunc, len(response.answers)), (i, 0, 1))
        self.assertEqual(self.server.counts["rate-limited"], 0)

    async def test_nxdomain_limited_per_zone(self) -> None:
        """Made-up names in one zone share one NXDOMAIN budget; another zone's NXDOMAIN
        has its own."""
        client = self.udp()
        first = await client.ask(query_bytes("x1.example.com", message_id=1))
        second = await client.ask(query_bytes("x2.example.com", message_id=2))
        self.assertEqual((first.rCode, second.rCode), (dns.ENAME, dns.ENAME))
        client.send(query_bytes("x3.example.com", message_id=3))
        other = await client.ask(query_bytes("x1.example.org", message_id=4))
        self.assertEqual((other.id, other.rCode), (4, dns.ENAME))
        self.assertEqual(self.server.counts["rate-limited"], 1)

    async def test_tcp_not_limited(self) -> None:
        """TCP answers are never rate limited."""
        client = await self.tcp()
        for i in range(10):
            response = await client.ask(query_bytes("example.com", dns.SOA, message_id=i))
            self.assertEqual((response.id, len(response.answers)), (i, 1))


class ServiceTests(_ServerCase):
    async def test_same_port_and_clean_stop(self) -> None:
        """Port 0 binds UDP and TCP on one port; stopService closes both and open TCP
        connections, leaving the port free."""
        service = self.start()
        port = service.port
        client = await self.tcp()
        await service.stopService()
        await client.lost
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as probe:
                probe.bind(("127.0.0.1", port))

    async def test_tcp_idle_timeout(self) -> None:
        """A TCP connection idle for 10 seconds is closed."""
        clock = Clock()
        self.start(clock=clock)
        client = await self.tcp()
        await client.ask(query_bytes("example.com", dns.SOA))
        clock.advance(9)
        self.assertFalse(client.lost.called)
        clock.advance(1)
        await client.lost
