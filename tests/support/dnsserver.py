"""A loopback DNS server for tests and benchmarks: the whole DNS, as far as a client can tell.

Rail's routing, DKIM verification by other programs and delivery benchmarks all need
real DNS answers on 127.0.0.1. This server, built on twisted.names, serves the records
it is given on one port over UDP and TCP and behaves like a recursive resolver that
knows every name:

- a name with records answers them (NOERROR, possibly NODATA for other types), with the
  addresses of MX and CNAME targets added as twisted.names' authority does;
- every other name is NXDOMAIN (the server is authoritative for the root);
- names marked ``servfail`` answer SERVFAIL, names marked ``silent`` get no answer at
  all (to test timeouts);
- UDP answers over 512 octets come back empty with TC set, so clients retry over TCP,
  as against a real server without EDNS.

Records are ``twisted.names.dns.Record_*`` objects; give them explicit TTLs (the default
here is 60 seconds) and split TXT strings with :func:`txt_record`. Records can be
replaced while the server runs. A resolver that fell back to TCP keeps its connection
open: close it (``resolver.connections``) before :meth:`RunningDNS.stop`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import attrs
import idna
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.names import authority, common, dns, server

__all__ = ["DEFAULT_TTL", "RunningDNS", "start_dns", "txt_record"]

DEFAULT_TTL = 60
_UDP_LIMIT = 512
_LISTEN_TRIES = 20


def txt_record(text: str | bytes, ttl: int = DEFAULT_TTL) -> dns.Record_TXT:
    """A TXT record holding ``text`` as 255-octet strings, the most one string can hold
    (twisted.names does not split them and fails to encode longer ones)."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
    return dns.Record_TXT(*chunks, ttl=ttl)


def _key(name: str) -> bytes:
    """Names are matched case-insensitively, in their A-label form, without a final dot."""
    name = name.rstrip(".")
    encoded = name.encode("ascii") if name.isascii() else idna.encode(name, uts46=True)
    return encoded.lower()


class _Zone(authority.FileAuthority):
    """FileAuthority's lookup rules over an in-memory table, authoritative for the root."""

    def __init__(self) -> None:
        common.ResolverBase.__init__(self)
        self.soa = (
            b"",
            dns.Record_SOA(
                mname=b"ns.test",
                rname=b"hostmaster.test",
                serial=1,
                refresh=DEFAULT_TTL,
                retry=DEFAULT_TTL,
                expire=DEFAULT_TTL,
                minimum=DEFAULT_TTL,
                ttl=DEFAULT_TTL,
            ),
        )
        self.records: dict[bytes, list[Any]] = {}
        self._cache: dict[Any, Any] = {}


class _Factory(server.DNSServerFactory):
    def __init__(self, zone: _Zone, running: RunningDNS) -> None:
        super().__init__(authorities=[zone])
        self._running = running
        self._lost: dict[Any, Deferred[None]] = {}

    def handleQuery(self, message: dns.Message, protocol: Any, address: Any) -> Any:
        query = message.queries[0]
        name = query.name.name.lower()
        self._running._received((name.decode("ascii", "replace"), query.type))
        if name in self._running._silent:
            return None
        if name in self._running._servfail:
            response = self._responseFromMessage(message=message, rCode=dns.ESERVER)
            self.sendReply(protocol, response, address)
            return None
        return super().handleQuery(message, protocol, address)

    def sendReply(self, protocol: Any, message: dns.Message, address: Any) -> None:
        if address is not None and len(message.toStr()) > _UDP_LIMIT:
            message.answers, message.authority, message.additional = [], [], []
            message.trunc = 1
        super().sendReply(protocol, message, address)

    def connectionLost(self, protocol: Any) -> None:
        super().connectionLost(protocol)
        waiting = self._lost.pop(protocol, None)
        if waiting is not None:
            waiting.callback(None)

    def close_connections(self) -> list[Deferred[None]]:
        """Close every TCP connection; the Deferreds fire once each is gone."""
        waits = []
        for protocol in list(self.connections):
            self._lost[protocol] = Deferred()
            waits.append(self._lost[protocol])
            protocol.transport.loseConnection()
        return waits


@attrs.define(eq=False)
class RunningDNS:
    """A started server: where it listens, what it was asked, and how to change it."""

    port: int = 0
    address: str = "127.0.0.1"
    queries: list[tuple[str, int]] = attrs.Factory(list)
    """Every query received, as ``(lower-case name, type)``, in order."""
    _zone: _Zone = attrs.Factory(_Zone)
    _servfail: set[bytes] = attrs.Factory(set)
    _silent: set[bytes] = attrs.Factory(set)
    _listening: list[Any] = attrs.Factory(list)
    _factory: _Factory | None = None
    _waiting: list[tuple[int, Deferred[None]]] = attrs.Factory(list)

    @property
    def nameservers(self) -> list[tuple[str, int]]:
        """The value for ``delivery.nameservers`` or ``client.Resolver(servers=...)``."""
        return [(self.address, self.port)]

    def set_records(self, name: str, records: Sequence[Any]) -> None:
        """Replace the records of ``name``; an empty sequence makes it NXDOMAIN again."""
        if records:
            self._zone.records[_key(name)] = list(records)
        else:
            self._zone.records.pop(_key(name), None)

    def set_servfail(self, name: str, failing: bool = True) -> None:
        """Make queries for ``name`` (any type) answer SERVFAIL, or stop doing so."""
        if failing:
            self._servfail.add(_key(name))
        else:
            self._servfail.discard(_key(name))

    def set_silent(self, name: str, silent: bool = True) -> None:
        """Drop queries for ``name`` without an answer, or answer them again."""
        if silent:
            self._silent.add(_key(name))
        else:
            self._silent.discard(_key(name))

    def wait_for_queries(self, count: int) -> Deferred[None]:
        """Fires once ``count`` queries in all have arrived: lets a test act on a query
        having reached the server (say, advance a Clock) without sleeping."""
        waiting: Deferred[None] = Deferred()
        self._waiting.append((count, waiting))
        self._received(None)
        return waiting

    def _received(self, query: tuple[str, int] | None) -> None:
        if query is not None:
            self.queries.append(query)
        ready = [(n, d) for n, d in self._waiting if len(self.queries) >= n]
        for entry in ready:
            self._waiting.remove(entry)
            entry[1].callback(None)

    async def stop(self) -> None:
        """Stop listening and close the server's side of open TCP connections."""
        waits = self._factory.close_connections() if self._factory is not None else []
        for port in self._listening:
            await maybeDeferred(port.stopListening)
        self._listening.clear()
        for wait in waits:
            await wait


async def start_dns(
    reactor: Any,
    records: Mapping[str, Sequence[Any]] | None = None,
    *,
    servfail: Collection[str] = (),
    silent: Collection[str] = (),
) -> RunningDNS:
    """Serve ``records`` (name to ``dns.Record_*`` list) on 127.0.0.1, UDP and TCP, on
    one free port. Call :meth:`RunningDNS.stop` when done (``addCleanup`` in tests)."""
    running = RunningDNS()
    for name, name_records in (records or {}).items():
        running.set_records(name, name_records)
    for name in servfail:
        running.set_servfail(name)
    for name in silent:
        running.set_silent(name)
    factory = _Factory(running._zone, running)
    running._factory = factory
    for _ in range(_LISTEN_TRIES):
        protocol = dns.DNSDatagramProtocol(controller=factory, reactor=reactor)
        udp = reactor.listenUDP(0, protocol, interface="127.0.0.1")
        port = udp.getHost().port
        try:
            tcp = reactor.listenTCP(port, factory, interface="127.0.0.1")
        except CannotListenError:
            await maybeDeferred(udp.stopListening)
            continue
        running.port = port
        running._listening += [udp, tcp]
        return running
    raise CannotListenError("127.0.0.1", 0, OSError("no port free for both UDP and TCP"))
