"""Looking up a domain's MTA-STS TXT record and fetching its policy over HTTPS (RFC 8461 §3).

The TXT record ``_mta-sts.<domain>`` is asked of Rail's configured resolvers (the
twisted.names client that routes mail), and ``mta-sts.<domain>``'s addresses too, so a
test's DNS server or an operator's resolver answers both. The policy is fetched with treq
from ``https://mta-sts.<domain>/.well-known/mta-sts.txt``: the certificate verified for
that name against the system's trust store (plus ``ca_file``) with SNI, no redirects
followed, only a ``200`` with ``Content-Type: text/plain``, at most
:data:`~rail.delivery.stspolicy.MAX_POLICY_SIZE` octets, within ``timeout`` seconds in
all. A failure comes back as a value naming its RFC 8460 result type
(``sts-policy-fetch-error``, ``sts-webpki-invalid`` or ``sts-policy-invalid``).

A recipient domain chooses where ``mta-sts.<domain>`` points: unless ``allow_private``
(``delivery.mta_sts.allow_private``, for tests), a host with any address that is not
globally routable (:mod:`rail.delivery.publicaddress`) is not contacted (a fetch error),
and the connection goes to the checked address, never resolving again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import treq
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferTimeoutError
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IResolver, IStreamClientEndpoint
from twisted.names.error import DNSNameError
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from rail.delivery.publicaddress import addresses_problem
from rail.delivery.resolve import DNS_TIMEOUT, RouteError, smarthost_route
from rail.delivery.stspolicy import (
    MAX_POLICY_SIZE,
    PolicyError,
    STSPolicy,
    parse_policy,
    parse_sts_record,
)
from rail.delivery.tlsverify import PeerCheck, TLSContexts

__all__ = [
    "FETCH_TIMEOUT",
    "Fetched",
    "PolicyFetcher",
    "policy_url",
    "read_capped",
]

FETCH_TIMEOUT = 20.0
"""Seconds a policy fetch may take, connection to last octet."""


def policy_url(domain: str, port: int = 443) -> str:
    """Where ``domain``'s policy is (RFC 8461 §3.3)."""
    netloc = f"mta-sts.{domain}" + ("" if port == 443 else f":{port}")
    return f"https://{netloc}/.well-known/mta-sts.txt"


@attrs.frozen
class Fetched:
    """A fetched policy, or the RFC 8460 result type and reason of the failure."""

    policy: STSPolicy | None = None
    result: str | None = None
    reason: str | None = None


class _TooLargeError(Exception):
    pass


@implementer(IStreamClientEndpoint)
class _Tracked:
    """An endpoint that remembers what it connected, so the fetch can close it for
    certain (a TLS close would otherwise wait for the peer, e.g. after an oversized
    body)."""

    def __init__(self, endpoint: IStreamClientEndpoint, protocols: list[Any]) -> None:
        self._endpoint = endpoint
        self._protocols = protocols

    def connect(self, factory: Any) -> Deferred[Any]:
        def connected(protocol: Any) -> Any:
            self._protocols.append(protocol)
            return protocol

        return self._endpoint.connect(factory).addCallback(connected)


@implementer(IAgentEndpointFactory)
class _Endpoints:
    """Connects to the address Rail's resolver found, with TLS checked by ``check``."""

    def __init__(self, reactor: Any, address: str, port: int, check: PeerCheck, timeout: float):
        self._reactor, self._address, self._port = reactor, address, port
        self._check, self._timeout = check, timeout
        self.protocols: list[Any] = []

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        kind = TCP6ClientEndpoint if ":" in self._address else TCP4ClientEndpoint
        tcp = kind(self._reactor, self._address, self._port, timeout=max(1, int(self._timeout)))
        return _Tracked(wrapClientTLS(self._check, tcp), self.protocols)

    def abort(self) -> None:
        for protocol in self.protocols:
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                transport.abortConnection()


class PolicyFetcher:
    """Asks ``resolver`` and fetches over ``reactor``, verifying with ``contexts``."""

    def __init__(
        self,
        reactor: Any,
        resolver: IResolver,
        contexts: TLSContexts,
        *,
        port: int = 443,
        timeout: float = FETCH_TIMEOUT,
        dns_timeout: Sequence[int] = DNS_TIMEOUT,
        allow_private: bool = False,
    ) -> None:
        self._reactor = reactor
        self._resolver = resolver
        self._contexts = contexts
        self._port = port
        self._timeout = timeout
        self._dns_timeout = tuple(dns_timeout)
        self._allow_private = allow_private

    async def policy_id(self, domain: str) -> str | None:
        """The ``id`` of ``domain``'s ``_mta-sts`` record; None when there is none, it
        is malformed, or the lookup failed (a cached policy then stays in use)."""
        try:
            result: Any = await self._resolver.lookupText(f"_mta-sts.{domain}", self._dns_timeout)
        except DNSNameError:
            return None
        except Exception:
            return None
        texts = []
        for rr in result[0]:
            data = getattr(rr.payload, "data", None)
            if rr.type == 16 and data is not None:
                texts.append(b"".join(data).decode("utf-8", "replace"))
        try:
            return parse_sts_record(texts)
        except PolicyError:
            return None

    def fetch(self, domain: str) -> Deferred[Fetched]:
        """The policy of ``domain``, or why not; never fails."""
        d = Deferred.fromCoroutine(self._fetch(domain))
        d.addTimeout(self._timeout, self._reactor)
        return d.addErrback(
            lambda f: Fetched(
                result="sts-policy-fetch-error",
                reason="timed out" if f.check(DeferTimeoutError, CancelledError) else str(f.value),
            )
        )

    async def _fetch(self, domain: str) -> Fetched:
        host = f"mta-sts.{domain}"
        try:
            route = await smarthost_route(
                self._resolver, host, self._port, timeout=self._dns_timeout
            )
        except RouteError as e:
            return Fetched(result="sts-policy-fetch-error", reason=f"{host}: {e.reply.text}")
        addresses = route.hosts[0].addresses
        problem = addresses_problem(
            addresses, allow_private=self._allow_private, setting="delivery.mta_sts.allow_private"
        )
        if problem is not None:
            return Fetched(result="sts-policy-fetch-error", reason=f"{host}: {problem}")
        address = addresses[0]
        check = self._contexts.https(host)
        pool = HTTPConnectionPool(self._reactor, persistent=False)
        endpoints = _Endpoints(self._reactor, address, self._port, check, self._timeout)
        agent = Agent.usingEndpointFactory(self._reactor, endpoints, pool=pool)
        client = treq.client.HTTPClient(agent)
        try:
            response = await client.get(policy_url(domain, self._port), allow_redirects=False)
            if response.code != 200:
                return Fetched(result="sts-policy-fetch-error", reason=f"HTTP {response.code}")
            media = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
            if media.split(b";")[0].strip().lower() != b"text/plain":
                why = f"Content-Type {media.decode('latin-1')!r}, not text/plain"
                return Fetched(result="sts-policy-fetch-error", reason=why)
            body = await read_capped(response, MAX_POLICY_SIZE)
        except Exception as e:
            if check.verdict is not None:
                return Fetched(
                    result="sts-webpki-invalid", reason=f"{host}: {check.verdict.reason}"
                )
            return Fetched(result="sts-policy-fetch-error", reason=f"{host}: {_describe(e)}")
        finally:
            endpoints.abort()
            await pool.closeCachedConnections()
        if body is None:
            return Fetched(
                result="sts-policy-fetch-error", reason=f"larger than {MAX_POLICY_SIZE} octets"
            )
        try:
            return Fetched(policy=parse_policy(body.decode("utf-8")))
        except (UnicodeDecodeError, PolicyError) as e:
            return Fetched(result="sts-policy-invalid", reason=str(e))


async def read_capped(response: Any, limit: int) -> bytes | None:
    """The body, or None as soon as it is over ``limit`` octets (the connection is then
    closed: a server cannot make Rail hold an endless body)."""
    length = response.length
    if isinstance(length, int) and length > limit:
        return None
    chunks: list[bytes] = []
    size = 0

    def collect(data: bytes) -> None:
        nonlocal size
        size += len(data)
        if size > limit:
            raise _TooLargeError()
        chunks.append(data)

    try:
        await treq.collect(response, collect)
    except _TooLargeError:
        return None
    return b"".join(chunks)


def _describe(error: BaseException) -> str:
    reasons = getattr(error, "reasons", None)
    if reasons:
        return "; ".join(_describe(r.value) for r in reasons)
    text = str(error) or type(error).__name__
    return text if text != type(error).__name__ else type(error).__name__
