"""The doctor's questions to the network: DNS over twisted.names, the MTA-STS policy over
treq, and TCP connections to Rail's public ports.

Glue: every answer becomes a plain value of :mod:`rail.doctor.checks` (:class:`Lookup`,
:class:`Fetch`, :class:`PortAnswer`), every failure included; nothing here raises for
what the network does. Each question has a timeout. :class:`Overrides` lets tests point
the public addresses and ports at loopback servers and trust their CA.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Coroutine, Mapping, Sequence
from hashlib import sha256
from typing import Any, TypeVar

import attrs
import treq
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IHandshakeListener,
    IResolver,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.names import dns
from twisted.names.error import (
    DNSNameError,
    DNSQueryRefusedError,
    DNSQueryTimeoutError,
    DNSServerError,
)
from twisted.python.failure import Failure
from twisted.web.client import URI, Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from rail.delivery.stsfetch import read_capped
from rail.dns.records import CAA, MX
from rail.doctor.checks import Fetch, Lookup, PortAnswer

__all__ = [
    "CAA_TYPE",
    "DNS_TIMEOUT",
    "TIMEOUT",
    "Overrides",
    "Probe",
    "make_trust_root",
    "policy_url",
    "reverse_name",
]

DNS_TIMEOUT: tuple[int, ...] = (1, 3)
"""Seconds before each resend of a query: a silent resolver costs 4 s per question."""
TIMEOUT = 5.0
"""Seconds a TCP connection, greeting, handshake or policy fetch may take."""
CAA_TYPE = 257
_POLICY_LIMIT = 64 * 1024  # RFC 8461 §3.3: senders may cap the policy's size; a directory too
_BANNER_LIMIT = 1024

T = TypeVar("T")


def policy_url(domain: str) -> str:
    """Where senders fetch ``domain``'s MTA-STS policy (RFC 8461 §3.3)."""
    return f"https://mta-sts.{domain}/.well-known/mta-sts.txt"


@attrs.frozen
class Overrides:
    """Where the probes really go, for tests: public address to the address to connect
    to, public port to the port to connect to, and the roots TLS verification trusts
    (default: the platform's)."""

    addresses: Mapping[str, str] = attrs.field(factory=dict)
    ports: Mapping[int, int] = attrs.field(factory=dict)
    trust: Sequence[x509.Certificate] | None = None

    def target(self, address: str, port: int) -> tuple[str, int]:
        return self.addresses.get(address, address), self.ports.get(port, port)


def make_trust_root(certificates: Sequence[x509.Certificate]) -> Any:
    """A TLS trust root (twisted's ``IOpenSSLTrustRoot``, not public) of ``certificates``."""
    root: Any = trustRootFromCertificates(
        [Certificate.loadPEM(c.public_bytes(Encoding.PEM)) for c in certificates]
    )
    return root


def _name(value: bytes) -> str:
    return value.decode("ascii", "replace").lower().rstrip(".")


def _caa(data: bytes) -> CAA | None:
    """A CAA record's RDATA (RFC 8659 §4.1), or None when malformed."""
    if len(data) < 2 or len(data) < 2 + data[1]:
        return None
    tag = data[2 : 2 + data[1]].decode("ascii", "replace")
    return CAA(data[0], tag, data[2 + data[1] :].decode("ascii", "replace"))


def _value(rr: dns.RRHeader) -> object:
    payload: Any = rr.payload
    if rr.type == dns.MX:
        return MX(payload.preference, _name(payload.name.name))
    if rr.type == dns.A:
        return payload.dottedQuad()
    if rr.type == dns.AAAA:
        return socket.inet_ntop(socket.AF_INET6, payload.address)
    if rr.type == dns.TXT:
        return b"".join(payload.data).decode("utf-8", "replace")
    if rr.type == dns.PTR:
        return _name(payload.name.name)
    if rr.type == CAA_TYPE:
        return _caa(payload.data)
    return None


def _describe(error: BaseException) -> str:
    if isinstance(error, DNSQueryTimeoutError | defer.TimeoutError):
        return "timeout"
    if isinstance(error, DNSServerError):
        return "SERVFAIL"
    if isinstance(error, DNSQueryRefusedError):
        return "REFUSED"
    return type(error).__name__


def reverse_name(address: str) -> str:
    """The ``in-addr.arpa`` or ``ip6.arpa`` name of ``address``."""
    return ipaddress.ip_address(address).reverse_pointer


class _FirstLine(Protocol):
    """Waits for the server's first line (an SMTP greeting), then says QUIT."""

    def __init__(self) -> None:
        self.line: Deferred[bytes] = Deferred(self._cancel)
        self._buffer = b""

    def _cancel(self, _d: Deferred[bytes]) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        if b"\n" in self._buffer or len(self._buffer) > _BANNER_LIMIT:
            line = self._buffer.split(b"\n", 1)[0].rstrip(b"\r")[:200]
            if not self.line.called:
                self.transport.write(b"QUIT\r\n")  # type: ignore[union-attr]
                self.transport.loseConnection()  # type: ignore[union-attr]
                self.line.callback(line)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.line.called:
            self.line.errback(reason)


@implementer(IHandshakeListener)
class _Handshake(Protocol):
    """Fires with the server's certificate once the TLS handshake is done, then closes."""

    def __init__(self) -> None:
        self.done: Deferred[x509.Certificate | None] = Deferred(self._cancel)

    def _cancel(self, _d: Deferred[x509.Certificate | None]) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def handshakeCompleted(self) -> None:
        peer = self.transport.getPeerCertificate()  # type: ignore[union-attr]
        certificate = None if peer is None else peer.to_cryptography()
        self.transport.loseConnection()  # type: ignore[union-attr]
        if not self.done.called:
            self.done.callback(certificate)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.done.called:
            self.done.errback(reason)


@implementer(IAgentEndpointFactory)
class _PolicyEndpoints:
    """Connects the policy fetch to the address the doctor's resolver found (or a
    test's), verifying the certificate for the URL's host name."""

    def __init__(self, reactor: Any, address: str, port: int, trust: Any, timeout: float) -> None:
        self._reactor, self._address, self._port = reactor, address, port
        self._trust, self._timeout = trust, timeout

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        tcp = _tcp(self._reactor, self._address, self._port, self._timeout)
        host = uri.host.decode("ascii")
        return wrapClientTLS(optionsForClientTLS(host, trustRoot=self._trust), tcp)


def _tcp(reactor: Any, address: str, port: int, timeout: float) -> IStreamClientEndpoint:
    kind = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
    endpoint: IStreamClientEndpoint = kind(reactor, address, port, timeout=int(timeout) or 1)
    return endpoint


class Probe:
    """Asks ``resolver`` (a twisted.names client) and connects with ``reactor``."""

    def __init__(
        self,
        reactor: Any,
        resolver: IResolver,
        overrides: Overrides | None = None,
        *,
        timeout: float = TIMEOUT,
        dns_timeout: Sequence[int] = DNS_TIMEOUT,
        trust_root: Any = None,
    ) -> None:
        """``trust_root`` (made by :func:`trust_root`, which costs milliseconds for a
        system's roots: a server makes it in a thread) verifies the MTA-STS policy
        server; default: ``overrides.trust``, else the platform's roots."""
        self._reactor = reactor
        self._resolver = resolver
        self._overrides = overrides or Overrides()
        self._timeout = timeout
        self._dns_timeout = tuple(dns_timeout)
        trust = self._overrides.trust
        if trust_root is not None:
            self._trust: Any = trust_root
        elif trust is not None:
            self._trust = make_trust_root(trust)
        else:
            self._trust = platformTrust()

    async def lookup(self, name: str, rtype: int) -> Lookup[Any]:
        """The records of ``rtype`` in the answer for ``name`` (a CNAME's target's too:
        a recursive resolver answers them together)."""
        try:
            query = dns.Query(name.encode("ascii"), rtype, dns.IN)
        except (UnicodeEncodeError, ValueError):
            # A name from an answer (a PTR target) that is no host name.
            return Lookup(error=f"{name!r} is not a valid name")
        try:
            result: Any = await self._resolver.query(query, self._dns_timeout)
        except DNSNameError:
            return Lookup(nxdomain=True)
        except Exception as e:
            return Lookup(error=_describe(e))
        answers = result[0]
        values = [_value(rr) for rr in answers if rr.type == rtype]
        return Lookup(tuple(v for v in values if v is not None))

    async def addresses(self, name: str) -> tuple[Lookup[str], Lookup[str]]:
        """The A and the AAAA records of ``name``, asked at once."""
        ipv4: Deferred[Lookup[str]] = Deferred.fromCoroutine(self.lookup(name, dns.A))
        ipv6 = await self.lookup(name, dns.AAAA)
        return await ipv4, ipv6

    def _bounded(self, coroutine: Coroutine[Any, Any, T]) -> Deferred[T]:
        d = Deferred.fromCoroutine(coroutine)
        d.addTimeout(self._timeout, self._reactor)
        return d

    async def fetch_policy(self, domain: str) -> Fetch:
        """GET the MTA-STS policy from an address of ``mta-sts.<domain>``, verifying
        the certificate for that name, no redirects (RFC 8461 §3.3)."""
        ipv4, ipv6 = await self.addresses(f"mta-sts.{domain}")
        found = [*ipv4.records, *ipv6.records]
        if not found:
            why = ipv4.error or ipv6.error or "no address"
            return Fetch(error=f"mta-sts.{domain}: {why}")
        address, port = self._overrides.target(found[0], 443)
        endpoints = _PolicyEndpoints(self._reactor, address, port, self._trust, self._timeout)
        return await self._get(
            lambda pool: Agent.usingEndpointFactory(self._reactor, endpoints, pool=pool),
            policy_url(domain),
        )

    async def fetch_directory(self, url: str, trust: Sequence[x509.Certificate]) -> Fetch:
        """GET an ACME directory, verified with ``trust`` (``tls.acme.ca_file``'s
        certificates) or, when empty, the roots the doctor uses."""
        root = make_trust_root(trust) if trust else self._trust
        policy = BrowserLikePolicyForHTTPS(trustRoot=root)
        return await self._get(
            lambda pool: Agent(
                self._reactor,
                contextFactory=policy,
                connectTimeout=self._timeout,
                pool=pool,
            ),
            url,
        )

    async def _get(self, make_agent: Callable[[HTTPConnectionPool], Any], url: str) -> Fetch:
        """GET ``url`` without following redirects: the body (at most 64 KiB, within the
        timeout) of a 200, or why not."""
        pool = HTTPConnectionPool(self._reactor, persistent=False)
        client = treq.client.HTTPClient(make_agent(pool))
        try:
            response = await client.get(url, timeout=self._timeout, allow_redirects=False)
            body = await self._bounded(read_capped(response, _POLICY_LIMIT))
        except Exception as e:
            return Fetch(error=_fetch_error(e))
        finally:
            await pool.closeCachedConnections()
        if response.code != 200:
            return Fetch(error=f"HTTP {response.code}")
        if body is None:
            return Fetch(error=f"larger than {_POLICY_LIMIT} octets")
        return Fetch(text=body.decode("utf-8", "replace"))

    async def port(
        self, address: str, port: int, what: str, leaf: x509.Certificate | None
    ) -> PortAnswer:
        """Connect to ``address:port``: ``what`` is ``smtp`` (wait for the greeting) or
        ``tls`` (complete a handshake, and say whether the certificate is ``leaf``)."""
        host, real_port = self._overrides.target(address, port)
        probe = self._smtp if what == "smtp" else self._tls
        try:
            return await self._bounded(probe(host, real_port, leaf))
        except defer.TimeoutError:
            return PortAnswer(False, f"no answer within {self._timeout:g} s")
        except SSL.Error as e:
            return PortAnswer(True, f"TLS handshake failed: {e}", banner_ok=False)
        except Exception as e:
            return PortAnswer(False, _connect_error(e))

    async def _smtp(self, host: str, port: int, _leaf: x509.Certificate | None) -> PortAnswer:
        protocol = _FirstLine()
        await _tcp(self._reactor, host, port, self._timeout).connect(_OneProtocol(protocol))
        line = (await protocol.line).decode("ascii", "replace")
        return PortAnswer(True, line, banner_ok=line.startswith("220"))

    async def _tls(self, host: str, port: int, leaf: x509.Certificate | None) -> PortAnswer:
        protocol = _Handshake()
        tcp = _tcp(self._reactor, host, port, self._timeout)
        await wrapClientTLS(CertificateOptions(), tcp).connect(_OneProtocol(protocol))
        certificate = await protocol.done
        if leaf is None or certificate is None:
            return PortAnswer(True, "TLS handshake")
        if _fingerprint(certificate) == _fingerprint(leaf):
            return PortAnswer(True, "TLS handshake, Rail's current certificate")
        subject = certificate.subject.rfc4514_string()
        return PortAnswer(True, f"TLS handshake, another certificate ({subject})", banner_ok=False)

    def close(self) -> None:
        """Close the resolver's TCP connections (kept open after a truncated answer)."""
        for protocol in list(getattr(self._resolver, "connections", [])):
            if protocol.transport is not None:
                protocol.transport.loseConnection()


class _OneProtocol(Factory):
    """A factory that hands out the one protocol instance it was given."""

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: Any) -> Protocol:
        return self._protocol


def _fingerprint(certificate: x509.Certificate) -> bytes:
    return sha256(certificate.public_bytes(Encoding.DER)).digest()


def _fetch_error(error: Exception) -> str:
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(_fetch_error(r.value) for r in reasons)
    if isinstance(error, defer.CancelledError | defer.TimeoutError):
        return "timeout"
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if text != type(error).__name__ else text


def _connect_error(error: Exception) -> str:
    return str(error).strip() or type(error).__name__
