"""What the server decides for each question, on plain values (no wire format)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.dns.lookup import NOERROR, NOTIMP, NXDOMAIN, REFUSED, Answer, ZoneIndex
from rail.dns.records import ANY, AXFR, HINFO, IXFR, MX, SOA, A
from tests.dns.helpers import HOSTNAME, zones


class LookupTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.index = ZoneIndex(zones())

    def test_answer(self) -> None:
        """A name with records of the type asked answers them, authoritatively, with the
        MX target's addresses as additional records."""
        answer = self.index.answer("example.org", MX.TYPE)
        self.assertEqual((answer.rcode, answer.authoritative), (NOERROR, True))
        self.assertEqual([r.data for r in answer.answers], [MX(10, HOSTNAME)])
        self.assertEqual([r.type for r in answer.additional], [1, 28])
        self.assertEqual(answer.authority, ())

    def test_nxdomain(self) -> None:
        """A missing name is NXDOMAIN, authoritative, with the SOA (TTL = minimum)."""
        answer = self.index.answer("nope.example.com", A.TYPE)
        self.assertEqual((answer.rcode, answer.authoritative, answer.answers), (NXDOMAIN, True, ()))
        (soa,) = answer.authority
        assert isinstance(soa.data, SOA)
        self.assertEqual((soa.name, soa.ttl), ("example.com", soa.data.minimum))

    def test_nodata(self) -> None:
        """A name without the type asked is NOERROR with no answer and the SOA."""
        answer = self.index.answer("_dmarc.example.com", A.TYPE)
        self.assertEqual((answer.rcode, answer.authoritative, answer.answers), (NOERROR, True, ()))
        self.assertEqual([r.type for r in answer.authority], [SOA.TYPE])

    def test_empty_non_terminal(self) -> None:
        """_domainkey and _tls have names below them: NODATA, not NXDOMAIN (RFC 8020)."""
        for name in ("_domainkey.example.com", "_tls.example.org"):
            self.assertEqual(self.index.answer(name, 16).rcode, NOERROR, name)

    def test_refused(self) -> None:
        """Names outside every zone, including the root and parents, are REFUSED and not
        authoritative."""
        for name in ("example.net", "com", "", "xexample.com"):
            self.assertEqual(self.index.answer(name, A.TYPE), Answer(REFUSED), name)

    def test_transfers_refused(self) -> None:
        """AXFR and IXFR are REFUSED even for a zone apex."""
        self.assertEqual(self.index.answer("example.com", AXFR).rcode, REFUSED)
        self.assertEqual(self.index.answer("example.com", IXFR).rcode, REFUSED)

    def test_other_classes_refused(self) -> None:
        """CHAOS (version.bind) and other classes are REFUSED."""
        self.assertEqual(self.index.answer("example.com", 16, 3).rcode, REFUSED)

    def test_mailb(self) -> None:
        """MAILA/MAILB meta-queries are NOTIMP."""
        self.assertEqual(self.index.answer("example.com", 253).rcode, NOTIMP)

    def test_any(self) -> None:
        """ANY gets one HINFO "RFC8482" record (RFC 8482), not every RRset."""
        answer = self.index.answer("example.com", ANY)
        self.assertEqual([r.data for r in answer.answers], [HINFO("RFC8482", "")])
        self.assertEqual(answer.rcode, NOERROR)
        self.assertEqual(self.index.answer("nope.example.com", ANY).rcode, NXDOMAIN)

    def test_update(self) -> None:
        """A new index serves the new zones only."""
        index = ZoneIndex(zones()[1:])
        self.assertEqual(index.origins, ["example.org"])
        self.assertEqual(index.answer("example.com", A.TYPE).rcode, REFUSED)
