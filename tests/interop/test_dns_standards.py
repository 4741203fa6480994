"""Rail's DNS server against independent clients on loopback, over UDP and TCP: opcodes it
does not implement are answered NOTIMP (RFC 8906, RFC 8490), and a request
signed with a TSIG key it cannot check gets NOTAUTH with TSIG error BADKEY and no MAC
(RFC 8945 §5.2) rather than an unsigned answer.

dnspython makes the queries (in a thread: its calls block) and checks the TSIG response
as a client would; BIND's ``dig`` (a child process) checks the same over both transports.
"""

from __future__ import annotations

import shutil
import socket
import struct
from typing import Any

import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from rail.config.listen import ListenSpec
from rail.dns.server import DNSServer
from rail.dns.service import DNSService
from rail.dns.zone import build_zones
from tests.dns.helpers import CONFIG, ED25519, HOSTNAME
from tests.integration.processes import run
from tests.interop.test_dns import _status
from tests.support.tools import need_tool

_SECRET = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
_KEYRING = dns.tsigkeyring.from_text({"client-key.": _SECRET})
_NOT_IMPLEMENTED = (3, dns.opcode.NOTIFY, dns.opcode.UPDATE, 6, 7, 15)


def _exchange(port: int, wire: bytes, tcp: bool) -> bytes:
    """Send ``wire`` and return the raw response (blocking; bounded by a timeout)."""
    if tcp:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(struct.pack("!H", len(wire)) + wire)
            (length,) = struct.unpack("!H", _read(sock, 2))
            return _read(sock, length)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(wire, ("127.0.0.1", port))
        return sock.recv(65535)


def _read(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _dso_request() -> bytes:
    """A DSO Keepalive request (RFC 8490 §7.1): header with opcode 6 and
    all counts zero, then one TLV (type 1, length 8, two timeouts)."""
    header = struct.pack("!HHHHHH", 0x1234, 6 << 11, 0, 0, 0, 0)
    return header + struct.pack("!HHII", 1, 8, 15000, 15000)


class StandardsTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        zones = build_zones(["example.com"], HOSTNAME, CONFIG, {"example.com": [ED25519]})
        self.server = DNSServer(zones, reactor)
        self.service = DNSService(
            reactor, ListenSpec("tcp", 0, "127.0.0.1"), self.server, refresh_interval=None
        )
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def ask(self, wire: bytes, tcp: bool) -> Any:
        return deferToThread(_exchange, self.service.port, wire, tcp)

    async def test_unimplemented_opcodes_are_notimp(self) -> None:
        """Every opcode but QUERY (unassigned, NOTIFY, UPDATE, DSO) gets NOTIMP over UDP
        and TCP, with the request's id and opcode; unassigned ones and DSO echo no
        section (a DSO request's body is TLVs, not a question)."""
        for tcp in (False, True):
            for opcode in _NOT_IMPLEMENTED:
                request = dns.message.make_query("example.com", "SOA")
                request.set_opcode(opcode)
                raw = await self.ask(request.to_wire(), tcp)
                response = dns.message.from_wire(raw)
                self.assertEqual(response.id, request.id)
                self.assertEqual(response.opcode(), opcode)
                self.assertEqual(response.rcode(), dns.rcode.NOTIMP, (tcp, opcode))
                self.assertTrue(response.flags & dns.flags.QR)
            raw = await self.ask(_dso_request(), tcp)
            self.assertEqual(raw, struct.pack("!HHHHHH", 0x1234, 0x8000 | 6 << 11 | 4, 0, 0, 0, 0))

    async def test_tsig_with_unknown_key_is_badkey(self) -> None:
        """A query signed with a key Rail does not hold, over UDP and TCP, is answered
        NOTAUTH with an unsigned TSIG record saying BADKEY: dnspython, validating the
        answer with its keyring, reports that the server did not know the key; the
        answer holds no record of the zone."""
        for tcp in (False, True):
            request = dns.message.make_query("example.com", "SOA")
            request.use_tsig(_KEYRING, keyname="client-key.")
            raw = await self.ask(request.to_wire(), tcp)
            (flags,) = struct.unpack_from("!H", raw, 2)
            self.assertEqual(flags & 0xF, dns.rcode.NOTAUTH)
            self.assertEqual(struct.unpack_from("!HH", raw, 6), (0, 0))  # no answer, authority
            with self.assertRaises(dns.tsig.PeerBadKey):
                dns.message.from_wire(raw, keyring=_KEYRING, request_mac=request.mac)

    async def test_tsig_not_last_is_formerr(self) -> None:
        """A TSIG record that is not the last additional record is FORMERR (RFC 8945)."""
        request = dns.message.make_query("example.com", "SOA", use_edns=0)
        request.use_tsig(_KEYRING, keyname="client-key.")
        wire = bytearray(request.to_wire())
        # Move the OPT record (11 octets, right after the question) after the TSIG.
        question_end = 12 + len(b"\x07example\x03com\x00") + 4
        opt = bytes(wire[question_end : question_end + 11])
        self.assertEqual(opt[:3], b"\x00\x00\x29")
        moved = bytes(wire[:question_end]) + bytes(wire[question_end + 11 :]) + opt
        raw = await self.ask(moved, False)
        self.assertEqual(struct.unpack_from("!H", raw, 2)[0] & 0xF, dns.rcode.FORMERR)

    async def test_dig(self) -> None:
        """BIND's dig sees NOTIMP for DSO and an unassigned opcode, and NOTAUTH with TSIG
        error BADKEY for a query signed with an unknown key, over UDP and TCP."""
        need_tool("dig", "bind9-dnsutils")
        dig = shutil.which("dig")
        assert dig is not None
        port = str(self.service.port)
        for transport in ("+notcp", "+tcp"):
            for opcode in ("6", "3"):
                out, err, code = await run(
                    dig, "@127.0.0.1", "-p", port, "+time=3", "+tries=1", transport,
                    f"+opcode={opcode}", "example.com", "SOA",
                )  # fmt: skip
                self.assertEqual(_status(out.decode()), "NOTIMP", out)
            out, err, code = await run(
                dig, "@127.0.0.1", "-p", port, "+time=3", "+tries=1", transport,
                "-y", f"hmac-sha256:client-key:{_SECRET}", "example.com", "SOA",
            )  # fmt: skip
            text = out.decode()
            self.assertEqual(_status(text), "NOTAUTH", text)
            self.assertIn("BADKEY", text)
