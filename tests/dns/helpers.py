"""Zones, configurations and raw DNS clients shared by the DNS tests."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.names import dns
from twisted.protocols.basic import Int16StringReceiver

from rail.config.schema import DNS
from rail.dkim.records import PublishedKey
from rail.dns.zone import Zone, build_zones

HOSTNAME = "mail.example.com"
CONFIG = DNS(
    ipv4=("192.0.2.10",),
    ipv6=("2001:db8::10",),
    ttl=300.0,
    spf_include=("include:_spf.example.net",),
    dmarc_rua="mailto:dmarc@example.com",
    tls_rpt="mailto:tls@example.com",
    caa=("letsencrypt.org",),
)
ED25519 = PublishedKey("s1e", "ed25519", "v=DKIM1; k=ed25519; p=" + "A" * 43 + "=")
RSA = PublishedKey("s1r", "rsa", "v=DKIM1; k=rsa; p=" + "B" * 392)
LONG = PublishedKey("big", "rsa", "v=DKIM1; k=rsa; p=" + "C" * 736)
"""Like an RSA-4096 key: its answer (about 800 octets) does not fit in 512."""


def zones(config: DNS = CONFIG, serial: int = 7, **extra_keys: Any) -> list[Zone]:
    """example.com (with the host name) and example.org, with DKIM keys."""
    keys = {"example.com": [ED25519, RSA, LONG], "example.org": [ED25519]}
    return build_zones(
        ["example.com", "example.org"],
        HOSTNAME,
        config,
        keys,
        {"example.com": serial, "example.org": serial},
    )


def query_bytes(
    name: str | bytes,
    rtype: int = dns.A,
    *,
    rclass: int = dns.IN,
    edns: int | None = None,
    version: int = 0,
    opcode: int = dns.OP_QUERY,
    message_id: int = 4242,
    recursion: bool = True,
) -> bytes:
    """A query as a client sends it; ``edns`` is the advertised UDP payload size."""
    message = dns.Message(id=message_id, opCode=opcode, recDes=int(recursion))
    message.addQuery(name, rtype, rclass)
    if edns is not None:
        message.additional.append(
            dns.RRHeader(
                name=b"", type=dns.OPT, cls=edns, ttl=version << 16, payload=dns.UnknownRecord()
            )
        )
    return message.toStr()


def parse(data: bytes) -> dns.Message:
    message = dns.Message()
    message.fromStr(data)
    return message


def opt_of(message: dns.Message) -> dns.RRHeader | None:
    options = [r for r in message.additional if r.type == dns.OPT]
    return options[0] if options else None


class UDPClient(DatagramProtocol):
    """Sends datagrams to one server and hands out what comes back, in order."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[bytes] = []
        self._waiting: list[defer.Deferred[bytes]] = []

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data, ("127.0.0.1", self.port))

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if self._waiting:
            self._waiting.pop(0).callback(datagram)
        else:
            self.received.append(datagram)

    def next(self) -> defer.Deferred[bytes]:
        """The next datagram from the server (fires at once if one is waiting)."""
        if self.received:
            return defer.succeed(self.received.pop(0))
        waiting: defer.Deferred[bytes] = defer.Deferred()
        self._waiting.append(waiting)
        return waiting

    async def ask(self, data: bytes) -> dns.Message:
        self.send(data)
        return parse(await self.next())


class TCPClient(Int16StringReceiver):
    """Length-prefixed DNS messages over one TCP connection."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self._waiting: list[defer.Deferred[bytes]] = []
        self.lost: defer.Deferred[None] = defer.Deferred()

    def stringReceived(self, string: bytes) -> None:
        if self._waiting:
            self._waiting.pop(0).callback(string)
        else:
            self.received.append(string)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)

    def next(self) -> defer.Deferred[bytes]:
        if self.received:
            return defer.succeed(self.received.pop(0))
        waiting: defer.Deferred[bytes] = defer.Deferred()
        self._waiting.append(waiting)
        return waiting

    async def ask(self, data: bytes) -> dns.Message:
        self.sendString(data)
        return parse(await self.next())


class TCPClientFactory(Factory):
    def buildProtocol(self, addr: Any) -> TCPClient:
        return TCPClient()
