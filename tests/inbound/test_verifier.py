"""The whole check, SPF + DKIM + DMARC, in real worker threads against a real DNS
server on loopback, as the port-25 session will run it."""

from __future__ import annotations

import random
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import capturedLogs
from twisted.names import dns
from twisted.trial.unittest import TestCase

from rail.inbound import verifier as verifier_module
from rail.inbound.model import Authentication
from rail.inbound.results import authentication_results
from rail.inbound.verifier import Verifier
from rail.inbound.workers import Workers
from tests.inbound.authsupport import (
    PEER,
    TTL,
    DNSFixture,
    key_records,
    message,
    rail_keys,
    signed,
    start,
    txt,
)

DOMAIN = "example.test"

RECORDS: dict[str, list[Any]] = {
    DOMAIN: [txt(f"v=spf1 ip4:{PEER} -all")],
    f"_dmarc.{DOMAIN}": [txt("v=DMARC1; p=reject; sp=quarantine")],
    "esp.test": [txt("v=spf1 ip4:198.51.100.0/24 -all")],
    "helo.example.test": [txt(f"v=spf1 ip4:{PEER} -all")],
    "quiet.test": [txt("v=DMARC1; p=none")],
    "_dmarc.quiet.test": [txt("v=DMARC1; p=none")],
    "mx.example.test": [dns.Record_A(PEER, ttl=TTL)],
}


class VerifierTests(TestCase):
    timeout = 20

    async def verifier(self, **kw: Any) -> tuple[Verifier, DNSFixture]:
        records = {**RECORDS, **key_records(rail_keys(DOMAIN))}
        fixture = await start(self, records, **kw)
        verifier = Verifier(reactor, fixture.resolver, fixture.pool, rng=random.Random(1))
        return verifier, fixture

    async def verify(
        self, data: bytes, sender: str = f"bounce@{DOMAIN}", helo: str = "mx.example.test"
    ) -> Authentication:
        verifier, _ = await self.verifier()
        return await verifier.verify(PEER, helo, sender, data)

    async def test_dmarc_pass_by_spf(self) -> None:
        """Unsigned mail from an SPF-authorized host passes DMARC by SPF alignment."""
        auth = await self.verify(message(f"Shop <news@{DOMAIN}>"))
        self.assertEqual(
            auth,
            Authentication(
                spf="pass",
                spf_scope="mailfrom",
                spf_domain=DOMAIN,
                dkim=(),
                dmarc="pass",
                from_domain=DOMAIN,
                dmarc_policy="reject",
                spf_reason=auth.spf_reason,
                dmarc_reason="SPF aligned",
            ),
        )

    async def test_rail_signed_passes_dkim_and_dmarc(self) -> None:
        """Mail signed by Rail's outbound signer, relayed through a host SPF does not
        authorize (an ESP bounce domain): dkim=pass twice, DMARC passes by DKIM."""
        data = signed(message(f"Shop <news@{DOMAIN}>"), rail_keys(DOMAIN))
        auth = await self.verify(data, sender="b@esp.test")
        self.assertEqual(auth.spf, "fail")
        self.assertEqual([d.result for d in auth.dkim], ["pass", "pass"])
        self.assertEqual([d.algorithm for d in auth.dkim], ["rsa-sha256", "ed25519-sha256"])
        self.assertEqual((auth.dmarc, auth.dmarc_reason), ("pass", "DKIM aligned"))

    async def test_forged_from_fails_with_reject(self) -> None:
        """A From domain with p=reject, neither SPF nor DKIM aligned: dmarc=fail, reject."""
        auth = await self.verify(message(f"<ceo@{DOMAIN}>"), sender="x@esp.test")
        self.assertEqual((auth.dmarc, auth.dmarc_policy), ("fail", "reject"))

    async def test_subdomain_gets_sp(self) -> None:
        """A subdomain without its own record gets the organizational record's sp=."""
        auth = await self.verify(message(f"<a@news.{DOMAIN}>"), sender="x@esp.test")
        self.assertEqual(
            (auth.dmarc, auth.from_domain, auth.dmarc_policy),
            ("fail", f"news.{DOMAIN}", "quarantine"),
        )

    async def test_altered_signed_message(self) -> None:
        """A signed message altered in transit fails DKIM, and DMARC with it."""
        data = signed(message(f"<a@{DOMAIN}>"), rail_keys(DOMAIN)).replace(b"Hello", b"Hallo")
        auth = await self.verify(data, sender="b@esp.test")
        self.assertEqual([d.result for d in auth.dkim], ["fail", "fail"])
        self.assertEqual(auth.dmarc, "fail")

    async def test_null_sender_uses_helo(self) -> None:
        """The null reverse path checks HELO, which DMARC then aligns."""
        auth = await self.verify(message(f"<mailer-daemon@{DOMAIN}>"), "", "helo.example.test")
        self.assertEqual(
            (auth.spf, auth.spf_scope, auth.spf_domain, auth.dmarc),
            ("pass", "helo", "helo.example.test", "pass"),
        )

    async def test_from_problems(self) -> None:
        """Several From fields: permerror; no From field: none."""
        two = b"From: a@example.test\r\nFrom: b@example.test\r\n\r\nx\r\n"
        auth = await self.verify(two)
        self.assertEqual((auth.dmarc, auth.from_domain), ("permerror", None))
        auth = await self.verify(b"To: a@rail.test\r\n\r\nx\r\n")
        self.assertEqual((auth.dmarc, auth.from_domain), ("none", None))

    async def test_no_dmarc_record(self) -> None:
        """A From domain without a record anywhere: dmarc=none, no policy."""
        auth = await self.verify(message("<a@nowhere.test>"))
        self.assertEqual((auth.dmarc, auth.dmarc_policy), ("none", None))

    async def test_dns_failure_is_temperror(self) -> None:
        """SERVFAIL for the DMARC record is temperror, not none."""
        verifier, fixture = await self.verifier(servfail=[f"_dmarc.{DOMAIN}"])
        auth = await verifier.verify(PEER, "mx", f"b@{DOMAIN}", message(f"<a@{DOMAIN}>"))
        self.assertEqual((auth.spf, auth.dmarc), ("pass", "temperror"))

    async def test_reactor_not_blocked(self) -> None:
        """While DNS is silent, the reactor keeps running other work."""
        verifier, _ = await self.verifier(silent=[DOMAIN])
        checking = verifier.verify(PEER, "mx", f"b@{DOMAIN}", message(f"<a@{DOMAIN}>"))
        finished: list[object] = []
        checking.addBoth(lambda result: finished.append(result) or result)  # type: ignore[func-returns-value]
        await deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(finished, [])
        auth = await checking
        self.assertEqual(auth.spf, "temperror")

    async def test_cache_makes_repeats_free(self) -> None:
        """A repeated sender costs no further queries."""
        verifier, fixture = await self.verifier()
        data = signed(message(f"<a@{DOMAIN}>"), rail_keys(DOMAIN))
        await verifier.verify(PEER, "mx", f"b@{DOMAIN}", data)
        asked = len(fixture.server.queries)
        again = await verifier.verify(PEER, "mx", f"b@{DOMAIN}", data)
        self.assertEqual(len(fixture.server.queries), asked)
        self.assertEqual(again.dmarc, "pass")

    async def test_bug_in_a_check_is_temperror_and_logged(self) -> None:
        """An exception inside DKIM verification becomes dkim=temperror (never pass),
        DMARC is decided on the rest, and the failure is logged."""

        def broken(*args: object) -> object:
            raise ZeroDivisionError("bug")

        self.patch(verifier_module, "verify_dkim", broken)
        with capturedLogs() as events:
            auth = await self.verify(message(f"<a@{DOMAIN}>"))
        self.assertEqual([d.result for d in auth.dkim], ["temperror"])
        self.assertEqual((auth.spf, auth.dmarc), ("pass", "pass"))
        self.assertEqual([e.get("check") for e in events if "log_failure" in e], ["DKIM"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    async def test_bug_outside_checks_is_all_temperror(self) -> None:
        """Should the thread itself fail, every result is temperror."""

        def broken(*args: object) -> object:
            raise ZeroDivisionError("bug")

        self.patch(Verifier, "_authenticate", broken)
        auth = await self.verify(message(f"<a@{DOMAIN}>"))
        self.assertEqual(
            (auth.spf, [d.result for d in auth.dkim], auth.dmarc),
            ("temperror", ["temperror"], "temperror"),
        )
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    async def test_header_from_result(self) -> None:
        """The verdict makes a header with one clause per check and signature."""
        data = signed(message(f"<a@{DOMAIN}>"), rail_keys(DOMAIN))
        field = authentication_results("mx.rail.test", await self.verify(data))
        self.assertEqual(field.count("dkim=pass"), 2)
        self.assertIn("spf=pass", field)
        self.assertIn("dmarc=pass", field)


class CachedFirstVerifierTests(VerifierTests):
    """Every check above again, with the cache-only first attempt in Rail's own worker
    threads (as ``twistd rail`` runs it): a cold cache falls back to the waiting pool
    and gives the same results."""

    async def verifier(self, **kw: Any) -> tuple[Verifier, DNSFixture]:
        records = {**RECORDS, **key_records(rail_keys(DOMAIN))}
        fixture = await start(self, records, **kw)
        workers = Workers(reactor, name="test-verify")
        workers.startService()
        self.addCleanup(workers.stopService)
        verifier = Verifier(
            reactor, fixture.resolver, fixture.pool, rng=random.Random(1), cached=workers
        )
        return verifier, fixture

    async def test_warm_cache_never_uses_the_waiting_pool(self) -> None:
        """Once a sender's records are cached, the check is done entirely by the
        cache-only attempt; only the first message of a domain needed the waiting pool."""
        verifier, _ = await self.verifier()
        waited: list[object] = []
        real = verifier._waiting

        def counting(*args: Any) -> Any:
            waited.append(args)
            return real(*args)

        verifier._waiting = counting  # type: ignore[method-assign]
        data = signed(message(f"<a@{DOMAIN}>"), rail_keys(DOMAIN))
        first = await verifier.verify(PEER, "mx", f"b@{DOMAIN}", data)
        self.assertEqual(len(waited), 1)
        for _ in range(3):
            self.assertEqual(await verifier.verify(PEER, "mx", f"b@{DOMAIN}", data), first)
        self.assertEqual(len(waited), 1)
        self.assertEqual(first.dmarc, "pass")
