"""Routing through real DNS on 127.0.0.1 (tests/support/dnsserver.py) with twisted.names.

Timeouts are driven by a Clock: the resolver's packets go through the real reactor and
its timers through the Clock, so a silent server is waited out without wall time.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IResolver
from twisted.internet.task import Clock
from twisted.names import dns
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from rail.delivery.outcome import Reply, disposition
from rail.delivery.resolve import (
    MAX_HOSTS,
    Route,
    RouteError,
    RouteHost,
    make_resolver,
    parse_resolv_conf,
    resolve_route,
    smarthost_route,
)
from tests.support.dnsserver import RunningDNS, start_dns, txt_record

TTL = 60


def mx(preference: int, exchange: str) -> dns.Record_MX:
    return dns.Record_MX(preference, exchange.encode("ascii"), ttl=TTL)


def a(address: str) -> dns.Record_A:
    return dns.Record_A(address, ttl=TTL)


def aaaa(address: str) -> dns.Record_AAAA:
    return dns.Record_AAAA(address, ttl=TTL)


def cname(target: str) -> dns.Record_CNAME:
    return dns.Record_CNAME(target.encode("ascii"), ttl=TTL)


RECORDS: dict[str, list[Any]] = {
    "rail.test": [mx(10, "mx1.rail.test"), mx(10, "mx2.rail.test"), mx(20, "backup.rail.test")],
    "mx1.rail.test": [a("127.0.0.1"), aaaa("::1")],
    "mx2.rail.test": [a("127.0.0.2"), a("127.0.0.3")],
    "backup.rail.test": [aaaa("::2")],
    "plain.test": [a("127.0.0.5"), aaaa("::5")],
    "null.test": [mx(0, "")],
    "null10.test": [mx(10, "")],
    "dangling.test": [mx(10, "missing.dangling.test"), mx(20, "also-missing.dangling.test")],
    "half.test": [mx(10, "missing.half.test"), mx(20, "ok.half.test")],
    "ok.half.test": [a("127.0.0.7")],
    "flaky.test": [mx(10, "broken.flaky.test"), mx(20, "ok.flaky.test")],
    "ok.flaky.test": [a("127.0.0.8")],
    "broken-only.test": [mx(10, "broken.flaky.test")],
    "nodata.test": [dns.Record_TXT(b"v=spf1 -all", ttl=TTL)],
    "alias.test": [cname("rail.test")],
    "alias-plain.test": [cname("plain.test")],
    "cn.test": [mx(10, "mxalias.cn.test")],
    "mxalias.cn.test": [cname("mxreal.cn.test")],
    "mxreal.cn.test": [a("127.0.0.9")],
    "xn--bcher-kva.test": [mx(10, "mx.xn--bcher-kva.test")],
    "mx.xn--bcher-kva.test": [a("127.0.0.10")],
    "relay.test": [a("127.0.0.11"), aaaa("::11")],
}


class ClockedReactor:
    """Real sockets with fake time: twisted.names sends its packets through the real
    reactor and schedules its resends and timeouts through ``clock``."""

    def __init__(self, real: Any, clock: Clock) -> None:
        self._real = real
        self._clock = clock

    def listenUDP(self, *args: Any, **kwargs: Any) -> Any:
        return self._real.listenUDP(*args, **kwargs)

    def connectTCP(self, *args: Any, **kwargs: Any) -> Any:
        return self._real.connectTCP(*args, **kwargs)

    def callLater(self, *args: Any, **kwargs: Any) -> Any:
        return self._clock.callLater(*args, **kwargs)

    def seconds(self) -> float:
        return self._clock.seconds()


class ResolveTestCase(TestCase):
    """Starts the loopback server with :data:`RECORDS` and a resolver pointed at it."""

    async def start(self, clocked: Any = None, **kwargs: Any) -> tuple[RunningDNS, IResolver]:
        """The server (``kwargs`` go to start_dns) and a resolver on the real reactor,
        or on ``clocked`` when given."""
        server = await start_dns(reactor, RECORDS, **kwargs)
        self.addCleanup(server.stop)
        resolver = make_resolver(server.nameservers, clocked or reactor)
        self.addCleanup(_close_tcp, resolver)
        return server, resolver

    async def refused(self, d: Deferred[Route]) -> Reply:
        """The reply of the RouteError ``d`` fails with."""
        try:
            route = await d
        except RouteError as e:
            return e.reply
        self.fail(f"expected a RouteError, got {route!r}")


def _close_tcp(resolver: Any) -> None:
    """A resolver that fell back to TCP keeps the connection; close it before the
    server stops so the reactor is left clean."""
    for protocol in list(resolver.connections):
        protocol.transport.loseConnection()


class MXRouteTests(ResolveTestCase):
    async def test_preferences_and_every_address(self) -> None:
        """Hosts in preference order (shuffled within one by the rng), each with all
        its addresses, IPv6 and IPv4 interleaved."""
        server, resolver = await self.start()
        route = await resolve_route(resolver, "rail.test", random.Random(1))
        self.assertEqual(
            route,
            Route(
                (
                    RouteHost("mx2.rail.test", ("127.0.0.2", "127.0.0.3")),
                    RouteHost("mx1.rail.test", ("::1", "127.0.0.1")),
                    RouteHost("backup.rail.test", ("::2",)),
                ),
                port=25,
            ),
        )
        route = await resolve_route(resolver, "rail.test", random.Random(0))
        self.assertEqual(
            [host.name for host in route.hosts],
            ["mx1.rail.test", "mx2.rail.test", "backup.rail.test"],
        )

    async def test_additional_section_saves_queries(self) -> None:
        """Addresses that came in the MX answer's additional section are not asked
        again; only the families it lacked are."""
        server, resolver = await self.start()
        await resolve_route(resolver, "rail.test", random.Random(1), port=2525)
        self.assertEqual(
            sorted(server.queries),
            sorted(
                [
                    ("rail.test", dns.MX),
                    ("mx2.rail.test", dns.AAAA),
                    ("backup.rail.test", dns.A),
                ]
            ),
        )

    async def test_port(self) -> None:
        """The configured port (tests only) travels with the route."""
        server, resolver = await self.start()
        route = await resolve_route(resolver, "plain.test", random.Random(0), port=2525)
        self.assertEqual(route.port, 2525)

    async def test_no_mx_falls_back_to_addresses(self) -> None:
        """A domain without MX records is its own mail host (implicit MX)."""
        server, resolver = await self.start()
        route = await resolve_route(resolver, "plain.test", random.Random(0))
        self.assertEqual(route, Route((RouteHost("plain.test", ("::5", "127.0.0.5")),)))

    async def test_international_domain(self) -> None:
        """A U-label domain is looked up as its IDNA A-label."""
        server, resolver = await self.start()
        route = await resolve_route(resolver, "bücher.test", random.Random(0))
        self.assertEqual(route, Route((RouteHost("mx.xn--bcher-kva.test", ("127.0.0.10",)),)))
        self.assertEqual(server.queries[0], ("xn--bcher-kva.test", dns.MX))

    async def test_many_mx_records_over_tcp(self) -> None:
        """An answer too large for UDP is fetched over TCP, and only the best
        :data:`MAX_HOSTS` hosts are looked up."""
        server, resolver = await self.start()
        hosts = [f"mx{i:02}.big.test" for i in range(40)]
        server.set_records("big.test", [mx(i, name) for i, name in enumerate(hosts)])
        for i, name in enumerate(hosts):
            server.set_records(name, [a(f"127.0.1.{i}")])
        route = await resolve_route(resolver, "big.test", random.Random(0))
        self.assertEqual([host.name for host in route.hosts], hosts[:MAX_HOSTS])
        self.assertEqual(route.hosts[3].addresses, ("127.0.1.3",))
        self.assertEqual(server.queries[:2], [("big.test", dns.MX), ("big.test", dns.MX)])
        self.assertNotIn(("mx20.big.test", dns.AAAA), server.queries)


class BounceTests(ResolveTestCase):
    async def test_null_mx(self) -> None:
        """RFC 7505 null MX bounces at once with 556 5.1.10, as a local reply."""
        server, resolver = await self.start()
        reply = await self.refused(resolve_route(resolver, "null.test", random.Random(0)))
        self.assertEqual((reply.code, reply.enhanced, reply.remote), (556, "5.1.10", False))
        self.assertEqual(disposition(reply), "bounced")
        self.assertEqual(server.queries, [("null.test", dns.MX)])

    async def test_root_exchange_with_other_preference(self) -> None:
        """A lone root exchange at another preference also means no mail."""
        server, resolver = await self.start()
        reply = await self.refused(resolve_route(resolver, "null10.test", random.Random(0)))
        self.assertEqual((reply.code, reply.enhanced), (556, "5.1.10"))

    async def test_nxdomain(self) -> None:
        """A domain that does not exist bounces with 550 5.1.2."""
        server, resolver = await self.start()
        reply = await self.refused(resolve_route(resolver, "nowhere.test", random.Random(0)))
        self.assertEqual((reply.code, reply.enhanced, reply.remote), (550, "5.1.2", False))

    async def test_no_mx_and_no_address(self) -> None:
        """A domain with neither MX nor address records cannot be routed: 550 5.4.4."""
        server, resolver = await self.start()
        reply = await self.refused(resolve_route(resolver, "nodata.test", random.Random(0)))
        self.assertEqual((reply.code, reply.enhanced), (550, "5.4.4"))

    async def test_mx_hosts_do_not_exist(self) -> None:
        """When every MX host is NXDOMAIN, the domain cannot be routed: 550 5.4.4."""
        server, resolver = await self.start()
        reply = await self.refused(resolve_route(resolver, "dangling.test", random.Random(0)))
        self.assertEqual((reply.code, reply.enhanced), (550, "5.4.4"))

    async def test_invalid_domain(self) -> None:
        """A domain that is not a valid name bounces without a query."""
        server, resolver = await self.start()
        for domain in ["bad_\u2028.test", "a..test", "x" * 64 + ".test"]:
            reply = await self.refused(resolve_route(resolver, domain, random.Random(0)))
            self.assertEqual((reply.code, reply.enhanced), (550, "5.1.2"), domain)
        self.assertEqual(server.queries, [])


class SkippedHostTests(ResolveTestCase):
    async def test_missing_host_skipped(self) -> None:
        """A host that does not resolve is left out; the others still make a route."""
        server, resolver = await self.start()
        route = await resolve_route(resolver, "half.test", random.Random(0))
        self.assertEqual(route, Route((RouteHost("ok.half.test", ("127.0.0.7",)),)))

    async def test_failing_host_skipped(self) -> None:
        """A host whose lookups fail temporarily is left out if another resolves."""
        server, resolver = await self.start(servfail=["broken.flaky.test"])
        route = await resolve_route(resolver, "flaky.test", random.Random(0))
        self.assertEqual(route, Route((RouteHost("ok.flaky.test", ("127.0.0.8",)),)))


class DeferTests(ResolveTestCase):
    async def test_servfail_for_domain(self) -> None:
        """SERVFAIL for the MX lookup defers with 451 4.4.3."""
        server, resolver = await self.start(servfail=["rail.test"])
        reply = await self.refused(resolve_route(resolver, "rail.test", random.Random(0)))
        self.assertEqual(
            reply, Reply(451, "4.4.3", "MX lookup for rail.test failed (SERVFAIL)", remote=False)
        )
        self.assertEqual(disposition(reply), "deferred")

    async def test_servfail_for_only_host(self) -> None:
        """When the only MX host's lookups fail temporarily, the domain defers."""
        server, resolver = await self.start(servfail=["broken.flaky.test"])
        reply = await self.refused(resolve_route(resolver, "broken-only.test", random.Random(0)))
        self.assertEqual((reply.code, reply.enhanced, reply.remote), (451, "4.4.3", False))

    async def test_silent_server_times_out(self) -> None:
        """A nameserver that never answers defers with 451 4.4.3 after exactly the
        resolver's timeouts (1 + 3 + 5 seconds), resending the query at each step."""
        clock = Clock()
        server, resolver = await self.start(
            clocked=ClockedReactor(reactor, clock), silent=["rail.test"]
        )
        d = resolve_route(resolver, "rail.test", random.Random(0))
        for sent, wait in [(1, 1.0), (2, 3.0), (3, 5.0)]:
            await server.wait_for_queries(sent)
            clock.advance(wait - 0.5)
            self.assertNoResult(d)
            clock.advance(0.5)
        reply = await self.refused(d)
        self.assertEqual(
            reply, Reply(451, "4.4.3", "MX lookup for rail.test failed (no answer)", remote=False)
        )
        self.assertEqual(len(server.queries), 3)
        self.assertEqual(clock.getDelayedCalls(), [])

    async def test_silent_host_lookups_time_out_together(self) -> None:
        """The AAAA and A lookups of the hosts run at once: one round of timeouts
        defers the domain."""
        clock = Clock()
        server, resolver = await self.start(
            clocked=ClockedReactor(reactor, clock), silent=["broken.flaky.test"]
        )
        d = resolve_route(resolver, "broken-only.test", random.Random(0))
        for sent, wait in [(3, 1.0), (5, 3.0), (7, 5.0)]:
            await server.wait_for_queries(sent)
            clock.advance(wait)
        reply = await self.refused(d)
        self.assertEqual((reply.code, reply.enhanced), (451, "4.4.3"))
        self.assertEqual(clock.getDelayedCalls(), [])


class CNAMETests(ResolveTestCase):
    async def test_cname_at_domain(self) -> None:
        """A domain that is an alias is routed by its target's MX records."""
        server, resolver = await self.start()
        route = await resolve_route(resolver, "alias.test", random.Random(1))
        self.assertEqual(
            [host.name for host in route.hosts],
            ["mx2.rail.test", "mx1.rail.test", "backup.rail.test"],
        )

    async def test_cname_at_domain_without_mx(self) -> None:
        """An alias whose target has no MX is delivered to the target's addresses."""
        server, resolver = await self.start()
        route = await resolve_route(resolver, "alias-plain.test", random.Random(0))
        self.assertEqual(route, Route((RouteHost("plain.test", ("::5", "127.0.0.5")),)))

    async def test_cname_at_mx_host(self) -> None:
        """An MX host that is an alias gets its target's addresses, under its MX name."""
        server, resolver = await self.start()
        route = await resolve_route(resolver, "cn.test", random.Random(0))
        self.assertEqual(route, Route((RouteHost("mxalias.cn.test", ("127.0.0.9",)),)))


class LiteralTests(ResolveTestCase):
    async def test_address_literals(self) -> None:
        """An address literal is its own route, without DNS."""
        server, resolver = await self.start()
        route = await resolve_route(resolver, "[127.0.0.1]", random.Random(0))
        self.assertEqual(route, Route((RouteHost("127.0.0.1", ("127.0.0.1",)),)))
        route = await resolve_route(resolver, "[IPv6:0::1]", random.Random(0))
        self.assertEqual(route, Route((RouteHost("::1", ("::1",)),)))
        self.assertEqual(server.queries, [])

    async def test_invalid_literal(self) -> None:
        """A malformed address literal bounces with 550 5.1.3."""
        server, resolver = await self.start()
        reply = await self.refused(resolve_route(resolver, "[300.0.0.1]", random.Random(0)))
        self.assertEqual((reply.code, reply.enhanced), (550, "5.1.3"))


class SmarthostTests(ResolveTestCase):
    async def test_ip_address(self) -> None:
        """A relay given as an IP address (bare or bracketed) needs no DNS."""
        server, resolver = await self.start()
        self.assertEqual(
            await smarthost_route(resolver, "192.0.2.1", 587),
            Route((RouteHost("192.0.2.1", ("192.0.2.1",)),), port=587),
        )
        self.assertEqual(
            await smarthost_route(resolver, "[IPv6:2001:db8::1]", 25),
            Route((RouteHost("2001:db8::1", ("2001:db8::1",)),)),
        )
        self.assertEqual(server.queries, [])

    async def test_host_name(self) -> None:
        """A relay host name is resolved to AAAA and A records, never MX."""
        server, resolver = await self.start()
        route = await smarthost_route(resolver, "relay.test", 2525)
        self.assertEqual(route, Route((RouteHost("relay.test", ("::11", "127.0.0.11")),), 2525))
        self.assertNotIn(("relay.test", dns.MX), server.queries)

    async def test_failures_defer(self) -> None:
        """A relay that does not resolve defers (4.4.4), as does a DNS failure (4.4.3):
        a broken relay is Rail's problem, not a reason to bounce."""
        server, resolver = await self.start(servfail=["relay.test"])
        reply = await self.refused(smarthost_route(resolver, "gone.test", 25))
        self.assertEqual((reply.code, reply.enhanced), (451, "4.4.4"))
        reply = await self.refused(smarthost_route(resolver, "relay.test", 25))
        self.assertEqual((reply.code, reply.enhanced), (451, "4.4.3"))


class LoopbackServerTests(ResolveTestCase):
    """The test server itself, as other tests (DKIM, interop, benchmarks) rely on it."""

    async def test_long_txt_split_and_served_over_tcp(self) -> None:
        """A TXT value over 255 octets is split into 255-octet strings, and an answer
        over 512 octets is truncated over UDP and fetched again over TCP."""
        server, resolver = await self.start()
        value = "v=DKIM1; k=rsa; p=" + "A" * 700
        server.set_records("sel._domainkey.rail.test", [txt_record(value)])
        answers, _, _ = await resolver.lookupText("sel._domainkey.rail.test", (1,))
        (record,) = answers
        self.assertEqual([len(s) for s in record.payload.data], [255, 255, 208])
        self.assertEqual(b"".join(record.payload.data).decode(), value)
        self.assertEqual(len(server.queries), 2)

    async def test_records_change_while_running(self) -> None:
        """Records can be replaced and removed while the server runs."""
        server, resolver = await self.start()
        server.set_records("plain.test", [a("127.0.0.99")])
        route = await resolve_route(resolver, "plain.test", random.Random(0))
        self.assertEqual(route.hosts[0].addresses, ("127.0.0.99",))
        server.set_records("plain.test", [])
        reply = await self.refused(resolve_route(resolver, "plain.test", random.Random(0)))
        self.assertEqual(reply.enhanced, "5.1.2")


class ResolverConfigTests(SynchronousTestCase):
    def test_parse_resolv_conf(self) -> None:
        """Nameserver lines give (address, 53); other lines and junk are ignored."""
        text = (
            "# comment\nsearch example.com\nnameserver 192.0.2.53\nnameserver ::1\nnameserver x\n"
        )
        self.assertEqual(parse_resolv_conf(text), [("192.0.2.53", 53), ("::1", 53)])

    def test_empty_resolv_conf(self) -> None:
        """No nameserver lines means a resolver on the local host, as in the C library."""
        self.assertEqual(parse_resolv_conf(""), [("127.0.0.1", 53)])

    def test_explicit_nameservers(self) -> None:
        """Configured nameservers are used as given, with the short timeouts."""
        resolver: Any = make_resolver([("127.0.0.1", 5353)], Clock())
        self.assertEqual(resolver.servers, [("127.0.0.1", 5353)])
        self.assertEqual(resolver.timeout, (1, 3, 5))

    def test_system_resolv_conf_read_once(self) -> None:
        """With no nameservers the system file is read once and no re-reading timer
        is left running."""
        path = FilePath(self.mktemp())
        path.setContent(b"nameserver 192.0.2.53\n")
        clock = Clock()
        resolver: Any = make_resolver(None, clock, resolv_conf=path)
        self.assertEqual(resolver.servers, [("192.0.2.53", 53)])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_missing_resolv_conf(self) -> None:
        """A missing resolv.conf means the local host, like an empty one."""
        resolver: Any = make_resolver(None, Clock(), resolv_conf=FilePath(self.mktemp()))
        self.assertEqual(resolver.servers, [("127.0.0.1", 53)])
