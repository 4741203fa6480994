"""DMARC: record parsing, Author Domain, alignment, policy (p, sp, pct) as pure logic,
and policy discovery against a real DNS server on loopback."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase, TestCase

from rail.inbound.dmarc import (
    Discovery,
    DMARCOutcome,
    DMARCRecord,
    DMARCRecordError,
    aligned,
    author_domain,
    discover,
    evaluate,
    organizational_domain,
    parse_record,
)
from rail.inbound.model import DKIMResult
from tests.inbound.authsupport import message, start, txt


def found(record: str, at: str) -> Discovery:
    return Discovery(record=parse_record(record.encode()), at=at)


def passing(domain: str) -> tuple[DKIMResult, ...]:
    return (DKIMResult("pass", domain=domain, selector="s", algorithm="ed25519-sha256"),)


class _Fixed(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


class RecordTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """Only p= given: relaxed alignment both ways, pct=100, no sp."""
        self.assertEqual(parse_record(b"v=DMARC1; p=reject"), DMARCRecord(p="reject"))

    def test_all_tags(self) -> None:
        """sp, adkim, aspf and pct are read; unknown tags and case are ignored."""
        self.assertEqual(
            parse_record(
                b"v=DMARC1; P=Quarantine; sp=reject; adkim=s; aspf=S; pct=25; "
                b"rua=mailto:d@example.test; future=1;"
            ),
            DMARCRecord(p="quarantine", sp="reject", adkim="s", aspf="s", pct=25),
        )

    def test_missing_p_with_rua_is_none(self) -> None:
        """A record without p= but with rua= is read as p=none (RFC 7489 §6.6.3)."""
        self.assertEqual(parse_record(b"v=DMARC1; rua=mailto:d@x.test").p, "none")

    def test_errors(self) -> None:
        """Bad values of known tags, or no p= at all, are record errors."""
        for text in (
            b"v=DMARC1",
            b"v=DMARC1; p=deny",
            b"v=DMARC1; p=none; pct=101",
            b"v=DMARC1; p=none; pct=x",
            b"v=DMARC1; p=none; adkim=q",
            b"v=DMARC1; p=none; sp=",
            b"v=DMARC1; p=none; bare",
        ):
            with self.assertRaises(DMARCRecordError, msg=text):
                parse_record(text)


class DomainTests(SynchronousTestCase):
    def test_organizational_domain(self) -> None:
        """One label below the public suffix, by the PSL; a suffix is its own."""
        self.assertEqual(organizational_domain("a.b.Example.co.uk."), "example.co.uk")
        self.assertEqual(organizational_domain("mail.example.test"), "example.test")
        self.assertEqual(organizational_domain("co.uk"), "co.uk")

    def test_relaxed_alignment(self) -> None:
        """Relaxed: same Organizational Domain, not merely a common suffix."""
        self.assertTrue(aligned("example.co.uk", "mail.example.co.uk", "r"))
        self.assertTrue(aligned("news.example.test", "bounce.example.test", "r"))
        self.assertFalse(aligned("example.co.uk", "other.co.uk", "r"))
        self.assertFalse(aligned("example.co.uk", "co.uk", "r"))

    def test_strict_alignment(self) -> None:
        """Strict: the same domain, case and root dot aside."""
        self.assertTrue(aligned("example.test", "EXAMPLE.test.", "s"))
        self.assertFalse(aligned("example.test", "mail.example.test", "s"))

    def test_author_domain(self) -> None:
        """The single From's domain, lower-case A-label; folded fields are read whole."""
        self.assertEqual(
            author_domain(message("A <a@News.Example.test>")), ("news.example.test", None)
        )
        folded = b"From: A\r\n <a@b\xc3\xbccher.test>\r\nTo: x@y.test\r\n\r\nbody\r\n"
        self.assertEqual(author_domain(folded), ("xn--bcher-kva.test", None))

    def test_author_domain_problems(self) -> None:
        """No From field; several From fields, different domains, no domain: reasons."""
        self.assertEqual(author_domain(b"To: x@y.test\r\n\r\n"), (None, "no From field"))
        two = b"From: a@x.test\r\nFrom: b@x.test\r\n\r\n"
        self.assertEqual(author_domain(two), (None, "several From fields"))
        mixed = b"From: a@x.test, b@y.test\r\n\r\n"
        self.assertEqual(author_domain(mixed), (None, "From addresses in several domains"))
        self.assertEqual(author_domain(b"From: nobody\r\n\r\n")[0], None)
        same = b"From: a@x.test, b@X.test\r\n\r\n"
        self.assertEqual(author_domain(same), ("x.test", None))


class EvaluateTests(SynchronousTestCase):
    rng = _Fixed(0.0)

    def test_pass_by_spf(self) -> None:
        """An SPF pass for an aligned MAIL FROM domain passes; the policy is reported."""
        outcome = evaluate(
            "example.test",
            found("v=DMARC1; p=reject", "example.test"),
            "pass",
            "bounce.example.test",
            (),
            self.rng,
        )
        self.assertEqual(outcome, DMARCOutcome("pass", "reject", "SPF aligned"))

    def test_pass_by_dkim(self) -> None:
        """An aligned DKIM pass passes even when SPF fails."""
        outcome = evaluate(
            "example.test",
            found("v=DMARC1; p=reject", "example.test"),
            "fail",
            "other.test",
            passing("mail.example.test"),
            self.rng,
        )
        self.assertEqual(outcome.result, "pass")

    def test_unaligned_or_failing_identifiers_fail(self) -> None:
        """Passes for other domains, or failures for this one, do not count."""
        dkim = (*passing("other.test"), DKIMResult("fail", domain="example.test"))
        for p in ("reject", "quarantine", "none"):
            outcome = evaluate(
                "example.test",
                found(f"v=DMARC1; p={p}", "example.test"),
                "softfail",
                "example.test",
                dkim,
                self.rng,
            )
            self.assertEqual((outcome.result, outcome.policy), ("fail", p))

    def test_strict_alignment(self) -> None:
        """aspf=s and adkim=s refuse subdomains that relaxed mode accepts."""
        record = "v=DMARC1; p=reject; aspf=s; adkim=s"
        outcome = evaluate(
            "example.test",
            found(record, "example.test"),
            "pass",
            "bounce.example.test",
            passing("mail.example.test"),
            self.rng,
        )
        self.assertEqual(outcome.result, "fail")
        outcome = evaluate(
            "example.test",
            found(record, "example.test"),
            "pass",
            "example.test",
            (),
            self.rng,
        )
        self.assertEqual(outcome.result, "pass")

    def test_sp_for_subdomain(self) -> None:
        """A record found at the Organizational Domain applies sp= to a subdomain, p=
        to the domain itself, and p= when there is no sp=."""
        record = "v=DMARC1; p=reject; sp=quarantine"
        sub = evaluate("news.example.test", found(record, "example.test"), "fail", "", (), self.rng)
        self.assertEqual(sub.policy, "quarantine")
        top = evaluate("example.test", found(record, "example.test"), "fail", "", (), self.rng)
        self.assertEqual(top.policy, "reject")
        plain = found("v=DMARC1; p=reject", "example.test")
        self.assertEqual(
            evaluate("news.example.test", plain, "fail", "", (), self.rng).policy, "reject"
        )

    def test_pct_sampling(self) -> None:
        """Failures outside pct get the next less strict policy."""
        record = found("v=DMARC1; p=reject; pct=30", "example.test")
        inside = evaluate("example.test", record, "fail", "", (), _Fixed(0.29))
        outside = evaluate("example.test", record, "fail", "", (), _Fixed(0.30))
        self.assertEqual((inside.policy, outside.policy), ("reject", "quarantine"))
        quarantine = found("v=DMARC1; p=quarantine; pct=0", "example.test")
        self.assertEqual(
            evaluate("example.test", quarantine, "fail", "", (), _Fixed(0.0)).policy, "none"
        )

    def test_no_record(self) -> None:
        """Without a record the result is discovery's, and no policy."""
        outcome = evaluate(
            "example.test", Discovery(result="none"), "pass", "example.test", (), self.rng
        )
        self.assertEqual((outcome.result, outcome.policy), ("none", None))


RECORDS = {
    "_dmarc.example.test": [txt("v=DMARC1; p=reject; sp=quarantine")],
    "_dmarc.direct.other.test": [txt("v=DMARC1; p=none")],
    "_dmarc.other.test": [txt("v=DMARC1; p=reject")],
    "_dmarc.twice.test": [txt("v=DMARC1; p=reject"), txt("v=DMARC1; p=none")],
    "_dmarc.noise.test": [txt("some verification token"), txt("v=DMARC1; p=quarantine")],
    "_dmarc.broken.test": [txt("v=DMARC1; p=sometimes")],
    "_dmarc.notdmarc.test": [txt("v=spf1 -all")],
}


class DiscoveryTests(TestCase):
    timeout = 20

    async def discover(self, domain: str, **kw: object) -> Discovery:
        fixture = await start(self, RECORDS, **kw)  # type: ignore[arg-type]
        return await fixture.run(discover, fixture.lookup, domain)

    async def test_record_at_author_domain(self) -> None:
        """The record at _dmarc.<Author Domain> is used."""
        result = await self.discover("example.test")
        self.assertEqual(
            (result.record, result.at), (DMARCRecord(p="reject", sp="quarantine"), "example.test")
        )

    async def test_fallback_to_organizational_domain(self) -> None:
        """Without a record at the subdomain, the Organizational Domain's applies."""
        result = await self.discover("a.news.example.test")
        self.assertEqual(result.at, "example.test")
        direct = await self.discover("direct.other.test")
        self.assertEqual((direct.at, direct.record), ("direct.other.test", DMARCRecord(p="none")))

    async def test_other_txt_records_ignored(self) -> None:
        """TXT records not starting v=DMARC1 are discarded."""
        self.assertEqual((await self.discover("noise.test")).record, DMARCRecord(p="quarantine"))
        self.assertEqual((await self.discover("notdmarc.test")).result, "none")

    async def test_none(self) -> None:
        """No record anywhere, or several, is none."""
        self.assertEqual((await self.discover("nowhere.test")).result, "none")
        self.assertEqual((await self.discover("twice.test")).result, "none")

    async def test_broken_record_is_permerror(self) -> None:
        """A v=DMARC1 record with a bad p= is permerror."""
        self.assertEqual((await self.discover("broken.test")).result, "permerror")

    async def test_dns_failure_is_temperror(self) -> None:
        """SERVFAIL at either step is temperror."""
        self.assertEqual(
            (await self.discover("example.test", servfail=["_dmarc.example.test"])).result,
            "temperror",
        )
        self.assertEqual(
            (await self.discover("sub.example.test", servfail=["_dmarc.example.test"])).result,
            "temperror",
        )
