"""The thread-side DNS adapter: answers, CNAMEs, the TTL cache and failures, against a
real DNS server on loopback. Cache expiry runs on a settable clock; packets go through
the real reactor."""

from __future__ import annotations

import contextlib
from typing import Any

from twisted.internet import reactor
from twisted.names import dns
from twisted.trial.unittest import TestCase

from rail.inbound.answers import DNSTemporaryError
from rail.inbound.lookup import CacheMiss, ThreadedLookup
from tests.inbound.authsupport import DNSFixture, start, txt


class _TimedReactor:
    """The real reactor, with a time the test sets."""

    def __init__(self) -> None:
        self.now = 1000.0

    def seconds(self) -> float:
        return self.now

    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        reactor.callFromThread(f, *args, **kw)


NEGATIVE_SOA_TTL = 60  # tests/support/dnsserver.py's SOA

RECORDS = {
    "t.test": [
        txt(
            "hello",
        ),
        dns.Record_TXT(b"two ", b"strings", ttl=30),
    ],
    "a.test": [dns.Record_A("192.0.2.1", ttl=300), dns.Record_AAAA("2001:db8::1", ttl=300)],
    "mx.test": [dns.Record_MX(10, b"mail.mx.test", ttl=300)],
    "alias.test": [dns.Record_CNAME(b"t.test", ttl=20)],
    "1.2.0.192.in-addr.arpa": [dns.Record_PTR(b"host.a.test", ttl=300)],
}


class LookupTests(TestCase):
    timeout = 20

    async def fixture(self, **kw: Any) -> tuple[DNSFixture, ThreadedLookup, _TimedReactor]:
        fixture = await start(self, RECORDS, **kw)
        clock = _TimedReactor()
        return fixture, ThreadedLookup(clock, fixture.resolver, cache_size=3), clock

    async def test_record_types(self) -> None:
        """A, AAAA, MX, PTR and TXT come back as the plain values pyspf expects."""
        fixture, lookup, _ = await self.fixture()

        def ask() -> list[object]:
            return [
                lookup.query("a.test", "A"),
                lookup.query("A.Test.", "AAAA"),
                lookup.query("mx.test", "MX"),
                lookup.query("1.2.0.192.in-addr.arpa", "PTR"),
                sorted(lookup.txt("t.test")),
                lookup.query("nowhere.test", "A"),
                lookup.query("a.test", "MX"),
            ]

        self.assertEqual(
            await fixture.run(ask),
            [
                ("192.0.2.1",),
                ("2001:db8::1",),
                ((10, "mail.mx.test"),),
                ("host.a.test",),
                [b"hello", b"two strings"],
                (),
                (),
            ],
        )

    async def test_cname_followed(self) -> None:
        """An alias answers with its target's records."""
        fixture, lookup, _ = await self.fixture()
        self.assertEqual(
            sorted(await fixture.run(lookup.txt, "alias.test")), [b"hello", b"two strings"]
        )

    async def test_cache_respects_ttl(self) -> None:
        """A repeated question is answered from the cache until the smallest TTL of the
        answer (the CNAME's 20 s here) has passed."""
        fixture, lookup, clock = await self.fixture()
        await fixture.run(lookup.txt, "alias.test")
        await fixture.run(lookup.txt, "alias.test")
        self.assertEqual(lookup.queries, 1)
        clock.now += 19
        await fixture.run(lookup.txt, "alias.test")
        self.assertEqual(lookup.queries, 1)
        clock.now += 1
        await fixture.run(lookup.txt, "alias.test")
        self.assertEqual(lookup.queries, 2)

    async def test_negative_answers_cached_for_soa_minimum(self) -> None:
        """NXDOMAIN is remembered for the SOA's negative TTL (RFC 2308)."""
        fixture, lookup, clock = await self.fixture()
        await fixture.run(lookup.txt, "nowhere.test")
        clock.now += NEGATIVE_SOA_TTL - 1
        await fixture.run(lookup.txt, "nowhere.test")
        self.assertEqual(lookup.queries, 1)
        clock.now += 1
        await fixture.run(lookup.txt, "nowhere.test")
        self.assertEqual(lookup.queries, 2)

    async def test_cache_bounded(self) -> None:
        """The least recently used entry goes when the cache is full."""
        fixture, lookup, _ = await self.fixture()

        def ask() -> None:
            for name in ("a.test", "mx.test", "t.test", "a.test", "alias.test", "mx.test"):
                lookup.query(name, "A")

        await fixture.run(ask)
        # a, mx, t cached; a hit; alias evicts mx; mx asked again.
        self.assertEqual(lookup.queries, 5)

    async def test_failures_are_temporary_and_not_cached(self) -> None:
        """SERVFAIL raises DNSTemporaryError, and the next question asks again."""
        fixture, lookup, _ = await self.fixture(servfail=["a.test"])

        def ask() -> int:
            failures = 0
            for _ in range(2):
                try:
                    lookup.query("a.test", "A")
                except DNSTemporaryError:
                    failures += 1
            return failures

        self.assertEqual(await fixture.run(ask), 2)
        self.assertEqual(lookup.queries, 2)

    async def test_timeout_is_temporary(self) -> None:
        """A silent server raises DNSTemporaryError once the resolver gives up."""
        fixture, lookup, _ = await self.fixture(silent=["a.test"])
        with self.assertRaises(DNSTemporaryError):
            await fixture.run(lookup.query, "a.test", "A")

    async def test_bad_names_are_not_found(self) -> None:
        """Names that cannot be asked (empty labels) are simply not found."""
        fixture, lookup, _ = await self.fixture()
        self.assertEqual(await fixture.run(lookup.query, "a..test", "A"), ())
        self.assertEqual(lookup.queries, 0)

    async def test_cache_only_answers_hits_and_refuses_misses(self) -> None:
        """In a cache-only block a cached question is answered; an uncached one raises
        CacheMiss without asking the server, and ``missed`` still tells so after a
        caller swallowed it (pyspf has bare ``except:`` clauses)."""
        fixture, lookup, _ = await self.fixture()
        await fixture.run(lookup.txt, "t.test")

        def cached() -> tuple[tuple[bytes, ...], bool]:
            with lookup.cache_only():
                answer = lookup.txt("t.test")
            return answer, lookup.missed()

        def swallowed() -> bool:
            # What a careless library does: a bare ``except:`` around the question.
            with lookup.cache_only(), contextlib.suppress(BaseException):
                lookup.query("a.test", "A")
            return lookup.missed()

        def raised() -> str:
            try:
                with lookup.cache_only():
                    lookup.query("mx.test", "MX")
            except CacheMiss as miss:
                return str(miss.args)
            return "answered"

        self.assertEqual(await fixture.run(cached), ((b"hello", b"two strings"), False))
        self.assertTrue(await fixture.run(swallowed))
        self.assertEqual(await fixture.run(raised), "('mx.test', 'MX')")
        self.assertEqual(lookup.queries, 1)
        # Outside the block the same thread asks the server again.
        self.assertEqual(await fixture.run(lookup.query, "a.test", "A"), ("192.0.2.1",))
        self.assertEqual(lookup.queries, 2)

    def test_refuses_reactor_thread(self) -> None:
        """Called on the reactor thread it raises instead of deadlocking."""
        lookup = ThreadedLookup(reactor, None)  # type: ignore[arg-type]
        with self.assertRaises(RuntimeError):
            lookup.query("a.test", "A")
