"""DNS routing for outbound mail: from a recipient domain to the addresses to connect to.

Glue between twisted.names and the pure decisions of :mod:`rail.delivery.mx`. The result
is a :class:`Route` (every host to try, in order, each with every address) or a
:class:`RouteError` whose reply says, by its class, whether the recipients bounce or wait:

======================================  ====================================  ==========
DNS says                                reply                                 fate
======================================  ====================================  ==========
null MX (RFC 7505)                      ``556 5.1.10``                        bounced
the domain does not exist (NXDOMAIN)    ``550 5.1.2``                         bounced
no host has an address, all definite    ``550 5.4.4`` (unable to route)       bounced
timeout, SERVFAIL, REFUSED, ...         ``451 4.4.3`` (directory failure)     deferred
======================================  ====================================  ==========

A domain without MX records is its own mail host (RFC 5321 §5.1, "implicit MX"). CNAMEs
are followed, at the domain and at MX hosts: twisted.names' client does not chase them,
so the answer section is followed by hand and the target asked again when a server
returned only the alias (as an authoritative server does). Address records that come in
the additional section of the MX answer are used, so a host usually costs no extra
query for a family the resolver already supplied.

The resolver is twisted.names' plain client, not ``createResolver``'s chain: the hosts
file has nothing to say about mail routing, and its cache would keep answers past the
operator's DNS changes with timers no service stops.
"""

from __future__ import annotations

import ipaddress
import random
import re
import socket
from collections.abc import Sequence
from typing import Any

import attrs
import idna
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.defer import TimeoutError as DeferTimeoutError
from twisted.internet.interfaces import IResolver
from twisted.names import client, dns
from twisted.names.error import DNSNameError, DNSQueryRefusedError, DNSServerError
from twisted.python.filepath import FilePath

from rail.delivery.mx import (
    is_address_literal,
    is_null_mx,
    order_addresses,
    order_hosts,
    parse_address_literal,
)
from rail.delivery.outcome import Reply
from rail.delivery.tlspolicy import OPPORTUNISTIC, TLSRequirement

__all__ = [
    "DNS_TIMEOUT",
    "MAX_HOSTS",
    "Route",
    "RouteError",
    "RouteHost",
    "make_resolver",
    "parse_resolv_conf",
    "resolve_route",
    "smarthost_route",
]

DNS_TIMEOUT: tuple[int, ...] = (1, 3, 5)
"""Seconds before each resend of a query; after the last one the lookup has failed
(9 seconds in all, instead of twisted.names' 60) and the recipients are deferred."""

MAX_HOSTS = 16
"""MX hosts looked up per domain, best first: a domain cannot make Rail send hundreds
of queries per message by publishing hundreds of MX records."""

_MAX_CNAME = 8
# Letters, digits, hyphen, and the underscore some MX host names carry in practice.
_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")
_RESOLV_CONF = FilePath("/etc/resolv.conf")


@attrs.frozen
class RouteHost:
    """One mail host and all its addresses, in the order to try them."""

    name: str
    addresses: tuple[str, ...] = attrs.field(validator=attrs.validators.min_len(1))
    tls: TLSRequirement = OPPORTUNISTIC
    """What TLS must achieve with this host (MTA-STS, DANE or the smarthost's)."""


@attrs.frozen
class Route:
    """Where to deliver a domain's mail: hosts in the order to try them, and the port."""

    hosts: tuple[RouteHost, ...] = attrs.field(validator=attrs.validators.min_len(1))
    port: int = 25


class RouteError(Exception):
    """No route: ``reply`` (``remote=False``) is a 5xx to bounce or a 4xx to defer."""

    def __init__(self, reply: Reply):
        super().__init__(str(reply))
        self.reply = reply


def parse_resolv_conf(text: str) -> list[tuple[str, int]]:
    """The ``nameserver`` lines of a resolv.conf(5), port 53; the local host if none.

    Like the C library, an empty or missing file means a resolver on 127.0.0.1.
    """
    servers: list[tuple[str, int]] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                servers.append((str(ipaddress.ip_address(words[1])), 53))
            except ValueError:
                continue
    return servers or [("127.0.0.1", 53)]


def make_resolver(
    nameservers: Sequence[tuple[str, int]] | None,
    reactor: Any,
    *,
    timeout: Sequence[int] = DNS_TIMEOUT,
    resolv_conf: FilePath[str] = _RESOLV_CONF,
) -> IResolver:
    """A twisted.names client asking ``nameservers``, or the system's when None.

    ``reactor`` provides IReactorUDP, IReactorTCP and IReactorTime (a test may combine a
    real reactor's sockets with a Clock's time). The system's resolv.conf is read once,
    here: twisted.names' own re-reading keeps a timer running forever, and Rail rebuilds
    its resolver when the configuration is reloaded anyway.
    """
    if nameservers is None:
        try:
            text = resolv_conf.getContent().decode("utf-8", "replace")
        except FileNotFoundError:
            text = ""
        servers = parse_resolv_conf(text)
    else:
        servers = list(nameservers)
    resolver: IResolver = client.Resolver(servers=servers, timeout=timeout, reactor=reactor)
    return resolver


def resolve_route(
    resolver: IResolver,
    domain: str,
    rng: random.Random,
    *,
    port: int = 25,
    timeout: Sequence[int] = DNS_TIMEOUT,
) -> Deferred[Route]:
    """The route to a recipient domain (A-label, U-label or address literal).

    Fails with :class:`RouteError`; see the module docstring for which reply when.
    ``rng`` shuffles MX hosts of equal preference; ``timeout`` goes with every query.
    """
    return Deferred.fromCoroutine(_domain_route(resolver, domain, rng, port, timeout))


def smarthost_route(
    resolver: IResolver,
    host: str,
    port: int,
    *,
    timeout: Sequence[int] = DNS_TIMEOUT,
) -> Deferred[Route]:
    """The route to a relay named by the operator: an IP address or a host name's
    AAAA and A records, no MX.

    Every failure defers (``451``), never bounces: a relay that cannot be found is a
    problem of Rail's own configuration or network, not of the recipients.
    """
    return Deferred.fromCoroutine(_smarthost_route(resolver, host, port, timeout))


class _TemporaryError(Exception):
    """A lookup failed in a way that may succeed later (timeout, SERVFAIL, ...)."""


@attrs.frozen
class _Answer:
    owner: str
    """The name the records belong to: the queried name or the end of its CNAME chain."""
    records: tuple[dns.RRHeader, ...]
    """Records of the queried type at ``owner``."""
    others: tuple[dns.RRHeader, ...]
    """The rest of the answer and the additional section, for addresses of MX hosts."""


@attrs.frozen
class _HostResult:
    name: str
    addresses: tuple[str, ...]
    temporary: bool


def _text(name: bytes) -> str:
    return name.decode("ascii", "replace").lower()


def _valid_hostname(name: str) -> bool:
    """A host name that can be sent as a query: 1-63 octet LDH labels, 253 in all."""
    return len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def _a_label(domain: str) -> str | None:
    """The domain as it is queried: IDNA 2008 A-labels (UTS #46 mapping), lower case."""
    try:
        name = domain if domain.isascii() else idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None
    name = name.lower()
    return name if _valid_hostname(name) else None


def _describe(error: BaseException) -> str:
    if isinstance(error, DNSServerError):
        return "SERVFAIL"
    if isinstance(error, DNSQueryRefusedError):
        return "REFUSED"
    if isinstance(error, DeferTimeoutError):
        return "no answer"
    return type(error).__name__


def _query(resolver: IResolver, name: str, rtype: int, timeout: Sequence[int]) -> Deferred[Any]:
    if rtype == dns.MX:
        return resolver.lookupMailExchange(name, timeout)
    if rtype == dns.AAAA:
        return resolver.lookupIPV6Address(name, timeout)
    return resolver.lookupAddress(name, timeout)


def _follow(name: str, answers: Sequence[dns.RRHeader]) -> str:
    """The end of the CNAME chain that starts at ``name`` within one answer section."""
    chain: dict[str, str] = {}
    for rr in answers:
        if isinstance(rr.payload, dns.Record_CNAME):
            chain[_text(rr.name.name)] = _text(rr.payload.name.name)
    owner, seen = name, {name}
    while owner in chain:
        owner = chain[owner]
        if owner in seen:
            raise _TemporaryError("CNAME loop")
        seen.add(owner)
    return owner


async def _lookup(resolver: IResolver, name: str, rtype: int, timeout: Sequence[int]) -> _Answer:
    """Records of ``rtype`` at ``name``, following CNAMEs.

    Raises DNSNameError for NXDOMAIN and :class:`_TemporaryError` for any other failure.
    """
    for _ in range(_MAX_CNAME):
        try:
            result: Any = await _query(resolver, name, rtype, timeout)
        except DNSNameError:
            raise
        except Exception as e:
            raise _TemporaryError(_describe(e)) from e
        answers, _authority, additional = result
        owner = _follow(name, answers)
        records = tuple(rr for rr in answers if rr.type == rtype and _text(rr.name.name) == owner)
        if records or owner == name:
            return _Answer(owner, records, (*answers, *additional))
        name = owner
    raise _TemporaryError("CNAME chain too long")


def _address(rr: dns.RRHeader) -> str | None:
    if isinstance(rr.payload, dns.Record_A):
        return str(rr.payload.dottedQuad())
    if isinstance(rr.payload, dns.Record_AAAA):
        return socket.inet_ntop(socket.AF_INET6, rr.payload.address)
    return None


def _glue(records: Sequence[dns.RRHeader]) -> dict[tuple[str, int], tuple[str, ...]]:
    """Addresses by (owner, type) from the extra records of an MX answer."""
    glue: dict[tuple[str, int], tuple[str, ...]] = {}
    for rr in records:
        address = _address(rr)
        if address is not None:
            key = (_text(rr.name.name), rr.type)
            glue[key] = (*glue.get(key, ()), address)
    return glue


async def _family(
    resolver: IResolver,
    name: str,
    rtype: int,
    glue: dict[tuple[str, int], tuple[str, ...]],
    timeout: Sequence[int],
) -> tuple[tuple[str, ...], bool]:
    """The addresses of one family of a host, and whether the lookup failed temporarily."""
    if (name, rtype) in glue:
        return glue[name, rtype], False
    try:
        answer = await _lookup(resolver, name, rtype, timeout)
    except DNSNameError:
        return (), False
    except _TemporaryError:
        return (), True
    found = (_address(rr) for rr in answer.records)
    return tuple(a for a in found if a is not None), False


async def _host(
    resolver: IResolver,
    name: str,
    glue: dict[tuple[str, int], tuple[str, ...]],
    timeout: Sequence[int],
) -> _HostResult:
    """Both families of one host, looked up at once."""
    if not _valid_hostname(name):
        return _HostResult(name, (), temporary=False)
    (v6, v6_temporary), (v4, v4_temporary) = await gatherResults(
        [
            Deferred.fromCoroutine(_family(resolver, name, dns.AAAA, glue, timeout)),
            Deferred.fromCoroutine(_family(resolver, name, dns.A, glue, timeout)),
        ],
        consumeErrors=True,
    )
    addresses = tuple(order_addresses(v6, v4))
    return _HostResult(name, addresses, temporary=v6_temporary or v4_temporary)


async def _hosts(
    resolver: IResolver,
    names: Sequence[str],
    glue: dict[tuple[str, int], tuple[str, ...]],
    timeout: Sequence[int],
) -> list[_HostResult]:
    """All hosts looked up concurrently; results in the order of ``names``."""
    return await gatherResults(
        [Deferred.fromCoroutine(_host(resolver, name, glue, timeout)) for name in names],
        consumeErrors=True,
    )


def _exchanges(records: Sequence[dns.RRHeader]) -> list[tuple[int, str]]:
    """``(preference, exchange)`` pairs, as :mod:`rail.delivery.mx` takes them."""
    pairs: list[tuple[int, str]] = []
    for rr in records:
        if isinstance(rr.payload, dns.Record_MX):
            pairs.append((rr.payload.preference, _text(rr.payload.name.name)))
    return pairs


def _literal_route(ip: str, port: int) -> Route:
    return Route((RouteHost(ip, (ip,)),), port)


def _temporary(text: str) -> RouteError:
    return RouteError(Reply(451, "4.4.3", text, remote=False))


async def _domain_route(
    resolver: IResolver, domain: str, rng: random.Random, port: int, timeout: Sequence[int]
) -> Route:
    if is_address_literal(domain):
        ip = parse_address_literal(domain)
        if ip is None:
            raise RouteError(Reply(550, "5.1.3", "invalid address literal", remote=False))
        return _literal_route(ip, port)
    name = _a_label(domain)
    if name is None:
        raise RouteError(Reply(550, "5.1.2", f"invalid domain name {domain!r}", remote=False))
    try:
        mx = await _lookup(resolver, name, dns.MX, timeout)
    except DNSNameError:
        raise RouteError(
            Reply(550, "5.1.2", f"domain {domain} does not exist", remote=False)
        ) from None
    except _TemporaryError as e:
        raise _temporary(f"MX lookup for {domain} failed ({e})") from None
    records = _exchanges(mx.records)
    if records:
        names = order_hosts(records, rng)
        if is_null_mx(records) or not names:
            raise RouteError(
                Reply(556, "5.1.10", f"domain {domain} accepts no mail (null MX)", remote=False)
            )
    else:
        names = [mx.owner]
    results = await _hosts(resolver, names[:MAX_HOSTS], _glue(mx.others), timeout)
    usable = tuple(RouteHost(r.name, r.addresses) for r in results if r.addresses)
    if usable:
        return Route(usable, port)
    if any(r.temporary for r in results):
        raise _temporary(f"address lookups for the mail hosts of {domain} failed")
    raise RouteError(
        Reply(550, "5.4.4", f"no mail host of domain {domain} has an address", remote=False)
    )


async def _smarthost_route(
    resolver: IResolver, host: str, port: int, timeout: Sequence[int]
) -> Route:
    literal = parse_address_literal(host) if is_address_literal(host) else None
    if literal is not None:
        return _literal_route(literal, port)
    try:
        return _literal_route(str(ipaddress.ip_address(host)), port)
    except ValueError:
        pass
    name = _a_label(host)
    if name is None:
        raise RouteError(Reply(451, "4.4.4", f"invalid smarthost name {host!r}", remote=False))
    (result,) = await _hosts(resolver, [name], {}, timeout)
    if result.addresses:
        return Route((RouteHost(result.name, result.addresses),), port)
    if result.temporary:
        raise _temporary(f"address lookup for smarthost {host} failed")
    raise RouteError(Reply(451, "4.4.4", f"smarthost {host} has no address", remote=False))
