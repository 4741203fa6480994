"""SPF through pyspf, answered by a real DNS server on loopback via twisted.names."""

from __future__ import annotations

import spf
from twisted.names import dns
from twisted.trial.unittest import TestCase

from rail.inbound.spfcheck import SPFOutcome, check_spf
from tests.inbound.authsupport import PEER, TTL, start, txt

RECORDS = {
    "pass.test": [txt(f"v=spf1 ip4:{PEER} -all")],
    "fail.test": [txt("v=spf1 ip4:198.51.100.0/24 -all")],
    "soft.test": [txt("v=spf1 ~all")],
    "neutral.test": [txt("v=spf1 ?all")],
    "nospf.test": [txt("google-site-verification=abc")],
    "syntax.test": [txt("v=spf1 ip4:192.0.2.300 -all")],
    "twice.test": [txt("v=spf1 -all"), txt("v=spf1 +all")],
    "mx.test": [
        txt("v=spf1 mx -all"),
        dns.Record_MX(10, b"mail.mx.test", ttl=TTL),
    ],
    "mail.mx.test": [dns.Record_A(PEER, ttl=TTL)],
    "a.test": [txt("v=spf1 a:host.a.test -all")],
    "host.a.test": [dns.Record_A(PEER, ttl=TTL)],
    "include.test": [txt("v=spf1 include:pass.test -all")],
    "helo.test": [txt(f"v=spf1 ip4:{PEER} -all")],
    "loop.test": [txt("v=spf1 " + " ".join(f"a:h{i}.loop.test" for i in range(11)) + " -all")],
    "void.test": [txt("v=spf1 a:x1.void.test a:x2.void.test a:x3.void.test -all")],
    "broken.test": [txt("v=spf1 include:servfail.test -all")],
    "long.test": [txt("v=spf1 ip4:198.51.100.1 " + "ip4:203.0.113.1 " * 40 + f"ip4:{PEER} -all")],
}
RECORDS.update({f"h{i}.loop.test": [dns.Record_A("198.51.100.9", ttl=TTL)] for i in range(11)})


class SPFTests(TestCase):
    timeout = 20

    async def check(self, sender: str, helo: str = "client.example", **kw: object) -> SPFOutcome:
        fixture = await start(self, RECORDS, **kw)  # type: ignore[arg-type]
        return await fixture.run(check_spf, fixture.lookup, PEER, helo, sender)

    async def test_pass(self) -> None:
        """An ip4 mechanism matching the client passes, scope mailfrom."""
        outcome = await self.check("bob@pass.test")
        self.assertEqual(
            (outcome.result, outcome.scope, outcome.domain), ("pass", "mailfrom", "pass.test")
        )

    async def test_fail(self) -> None:
        """-all without a matching mechanism is fail."""
        self.assertEqual((await self.check("bob@fail.test")).result, "fail")

    async def test_softfail(self) -> None:
        """~all is softfail."""
        self.assertEqual((await self.check("bob@soft.test")).result, "softfail")

    async def test_neutral(self) -> None:
        """?all is neutral."""
        self.assertEqual((await self.check("bob@neutral.test")).result, "neutral")

    async def test_none_without_record(self) -> None:
        """TXT records that are not SPF, or no name at all, give none."""
        self.assertEqual((await self.check("bob@nospf.test")).result, "none")
        self.assertEqual((await self.check("bob@nowhere.test")).result, "none")

    async def test_mx_and_a_mechanisms(self) -> None:
        """mx and a mechanisms resolve through the same lookup."""
        self.assertEqual((await self.check("bob@mx.test")).result, "pass")
        self.assertEqual((await self.check("bob@a.test")).result, "pass")

    async def test_include(self) -> None:
        """include: evaluates the included domain's record."""
        self.assertEqual((await self.check("bob@include.test")).result, "pass")

    async def test_long_record_over_tcp(self) -> None:
        """A record too long for UDP is fetched over TCP and still evaluated."""
        self.assertEqual((await self.check("bob@long.test")).result, "pass")

    async def test_null_sender_checks_helo(self) -> None:
        """The null reverse path checks postmaster@HELO, scope helo."""
        outcome = await self.check("", helo="helo.test")
        self.assertEqual(
            (outcome.result, outcome.scope, outcome.domain), ("pass", "helo", "helo.test")
        )

    async def test_permerror_syntax(self) -> None:
        """A malformed mechanism is permerror."""
        self.assertEqual((await self.check("bob@syntax.test")).result, "permerror")

    async def test_permerror_two_records(self) -> None:
        """Two SPF records at one name are permerror (RFC 7208 §4.5)."""
        self.assertEqual((await self.check("bob@twice.test")).result, "permerror")

    async def test_permerror_too_many_lookups(self) -> None:
        """More than 10 DNS-querying terms is permerror (RFC 7208 §4.6.4)."""
        outcome = await self.check("bob@loop.test")
        self.assertEqual(outcome.result, "permerror")

    async def test_permerror_void_lookups(self) -> None:
        """More than two void lookups is permerror (RFC 7208 §4.6.4)."""
        self.assertEqual((await self.check("bob@void.test")).result, "permerror")

    async def test_temperror_servfail(self) -> None:
        """SERVFAIL for the sender's domain, or an included one, is temperror."""
        outcome = await self.check("bob@pass.test", servfail=["pass.test"])
        self.assertEqual(outcome.result, "temperror")
        self.assertEqual(
            (await self.check("bob@broken.test", servfail=["servfail.test"])).result, "temperror"
        )

    async def test_temperror_timeout(self) -> None:
        """A server that never answers gives temperror once the resolver gives up."""
        outcome = await self.check("bob@pass.test", silent=["pass.test"])
        self.assertEqual(outcome.result, "temperror")

    def test_other_threads_keep_pyspfs_lookup(self) -> None:
        """Outside a check, pyspf's hook falls back to its own DNS function."""
        from rail.inbound import spfcheck

        self.assertIs(spf.DNSLookup, spfcheck._dispatch)
        self.assertIsNone(getattr(spfcheck._current, "lookup", None))
