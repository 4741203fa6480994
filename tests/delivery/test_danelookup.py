"""Tests for :mod:`rail.delivery.dnssec` (reading a validating resolver's answers) and
:mod:`rail.delivery.danelookup` (which hosts of a route DANE applies to)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import dns.message
import dns.rdatatype
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.dane import TLSARecord
from rail.delivery.danecheck import dane_check
from rail.delivery.danelookup import DaneRoute, dane_route, with_dane
from rail.delivery.dnssec import SecureAnswer, interpret, mx_hosts, tlsa_name, tlsa_records
from rail.delivery.resolve import Route, RouteError, RouteHost
from rail.delivery.tlspolicy import TLSRequirement
from rail.delivery.tlsreport import TLSOutcome
from tests.support.danecerts import NOW, issue, tlsa_for

_HEX = "ab" * 32


def _response(flags: str, rcode: str = "NOERROR", answer: str = "") -> dns.message.Message:
    text = (
        f"id 1\nopcode QUERY\nrcode {rcode}\nflags {flags}\n;QUESTION\nx. IN A\n;ANSWER\n{answer}"
    )
    return dns.message.from_text(text)


class InterpretTests(SynchronousTestCase):
    def test_ad_bit_means_secure(self) -> None:
        """An answer with AD is secure and carries its records of the asked type only
        (an RRSIG in the same section is not one)."""
        answer = (
            f"_25._tcp.mx.dest.test. 60 IN TLSA 3 1 1 {_HEX}\n"
            "_25._tcp.mx.dest.test. 60 IN RRSIG TLSA 13 5 60 20270101000000 20261201000000"
            " 1 dest.test. AAAA\n"
        )
        result = interpret(_response("QR RD RA AD", answer=answer), dns.rdatatype.TLSA)
        self.assertEqual(result.status, "secure")
        self.assertEqual(tlsa_records(result), (TLSARecord(3, 1, 1, bytes.fromhex(_HEX)),))

    def test_no_ad_bit_means_insecure(self) -> None:
        """The same answer without AD is insecure, whatever it contains."""
        answer = f"_25._tcp.mx.dest.test. 60 IN TLSA 3 1 1 {_HEX}\n"
        result = interpret(_response("QR RD RA", answer=answer), dns.rdatatype.TLSA)
        self.assertEqual(result, SecureAnswer("insecure", name="x"))

    def test_secure_nxdomain_is_secure_and_empty(self) -> None:
        """A validated NXDOMAIN proves there are no records: secure, none."""
        result = interpret(_response("QR RD RA AD", "NXDOMAIN"), dns.rdatatype.TLSA)
        self.assertEqual(result, SecureAnswer("secure", (), name="x"))

    def test_servfail_is_failed_not_insecure(self) -> None:
        """SERVFAIL (what a validating resolver answers for bogus data) is a failure,
        with a reason that says bogus may be why; REFUSED too."""
        result = interpret(_response("QR RD RA", "SERVFAIL"), dns.rdatatype.MX)
        self.assertEqual(result, SecureAnswer("failed", reason="SERVFAIL (bogus or unavailable)"))
        refused = interpret(_response("QR RD RA", "REFUSED"), dns.rdatatype.MX)
        self.assertEqual(refused.status, "failed")

    def test_mx_hosts_drop_null_mx_and_normalise(self) -> None:
        """MX exchanges come back lower-case without the final dot; the root is dropped."""
        answer = "dest.test. 60 IN MX 10 MX1.Dest.Test.\ndest.test. 60 IN MX 20 .\n"
        result = interpret(_response("QR RD RA AD", answer=answer), dns.rdatatype.MX)
        self.assertEqual(mx_hosts(result), ("mx1.dest.test",))

    def test_cname_expansion_is_named(self) -> None:
        """An answer that followed CNAMEs names where they led (the RFC 7672 §2.2.2
        expanded name), lower-cased; without CNAME, the question's name."""
        text = (
            "id 1\nopcode QUERY\nrcode NOERROR\nflags QR RD RA AD\n;QUESTION\n"
            "mx.dest.test. IN A\n;ANSWER\n"
            "mx.dest.test. 60 IN CNAME relay.dest.test.\n"
            "relay.dest.test. 60 IN CNAME SMTP.Provider.Test.\n"
            "SMTP.Provider.Test. 60 IN A 192.0.2.25\n"
        )
        result = interpret(dns.message.from_text(text), dns.rdatatype.A)
        self.assertEqual((result.status, result.name), ("secure", "smtp.provider.test"))
        self.assertEqual(len(result.rdata), 1)
        plain = interpret(_response("QR RD RA", answer="x. 60 IN A 192.0.2.1\n"), 1)
        self.assertEqual((plain.status, plain.name), ("insecure", "x"))

    def test_tlsa_name(self) -> None:
        """The TLSA owner of an SMTP server is ``_25._tcp.<host>`` (RFC 7672 §2.2.3)."""
        self.assertEqual(tlsa_name("mx.dest.test."), "_25._tcp.mx.dest.test")


class _FakeLookups:
    """Answers from tables: MX by domain, TLSA by host (missing host: insecure),
    address records by host (missing host: secure, no CNAME)."""

    def __init__(
        self,
        mx: SecureAnswer,
        tlsa: Mapping[str, SecureAnswer],
        addresses: Mapping[str, SecureAnswer] | None = None,
    ) -> None:
        self._mx = mx
        self._tlsa = tlsa
        self._addresses = addresses or {}
        self.asked: list[str] = []

    def mx(self, domain: str) -> Deferred[SecureAnswer]:
        self.asked.append(f"MX {domain}")
        return succeed(self._mx)

    def address(self, host: str) -> Deferred[SecureAnswer]:
        self.asked.append(f"A {host}")
        return succeed(self._addresses.get(host, SecureAnswer("secure", ("a",), name=host)))

    def tlsa(self, host: str, port: int = 25) -> Deferred[SecureAnswer]:
        self.asked.append(f"TLSA {host}")
        return succeed(self._tlsa.get(host, SecureAnswer("insecure")))


def _mx(*hosts: str) -> SecureAnswer:
    answer = "".join(f"dest.test. 60 IN MX 10 {h}.\n" for h in hosts)
    return interpret(_response("QR RD RA AD", answer=answer), dns.rdatatype.MX)


def _tlsa(*records: str) -> SecureAnswer:
    answer = "".join(f"_25._tcp.h. 60 IN TLSA {r}\n" for r in records)
    return interpret(_response("QR RD RA AD", answer=answer), dns.rdatatype.TLSA)


_ROUTE = Route(
    (RouteHost("mx1.dest.test", ("192.0.2.1",)), RouteHost("mx2.dest.test", ("192.0.2.2",)))
)


class DaneRouteTests(SynchronousTestCase):
    def _checked(self, lookups: _FakeLookups, route: Route = _ROUTE) -> DaneRoute:
        return self.successResultOf(dane_route(lookups, "Dest.Test", route))

    def _error(self, lookups: _FakeLookups, route: Route = _ROUTE) -> RouteError:
        failure = self.failureResultOf(dane_route(lookups, "dest.test", route), RouteError)
        error = failure.value
        assert isinstance(error, RouteError)
        return error

    def test_insecure_mx_means_no_dane_and_no_tlsa_queries(self) -> None:
        """An unsigned domain keeps its route, no host gets DANE, and no TLSA is asked."""
        lookups = _FakeLookups(SecureAnswer("insecure"), {})
        result = self._checked(lookups)
        self.assertEqual((result.route, dict(result.dane)), (_ROUTE, {}))
        self.assertEqual(lookups.asked, ["MX dest.test"])

    def test_secure_tlsa_makes_a_host_dane(self) -> None:
        """Secure MX and secure TLSA records for one host: that host gets a DANE result
        with its records, its name as reference identifier and the records' text; the
        other (no TLSA) gets none."""
        tlsa = _tlsa(f"3 1 1 {_HEX}", f"2 0 2 {'cd' * 64}")
        lookups = _FakeLookups(_mx("mx1.dest.test", "mx2.dest.test"), {"mx1.dest.test": tlsa})
        result = self._checked(lookups)
        self.assertEqual(result.route, _ROUTE)
        dane = result.dane
        self.assertEqual(list(dane), ["mx1.dest.test"])
        self.assertEqual(dane["mx1.dest.test"].names, ("mx1.dest.test",))
        self.assertEqual(
            dane["mx1.dest.test"].policy_strings, (f"3 1 1 {_HEX}", f"2 0 2 {'cd' * 64}")
        )

    def test_unusable_records_still_make_the_host_dane(self) -> None:
        """A secure RRset of only unusable records (PKIX-EE) still applies: TLS required."""
        lookups = _FakeLookups(_mx("mx1.dest.test"), {"mx1.dest.test": _tlsa(f"1 1 1 {_HEX}")})
        result = self._checked(lookups, Route((_ROUTE.hosts[0],)))
        self.assertIn("mx1.dest.test", result.dane)

    def test_failed_mx_lookup_defers(self) -> None:
        """A SERVFAIL (bogus) MX answer defers the domain with the reason."""
        error = self._error(_FakeLookups(SecureAnswer("failed", reason="SERVFAIL (bogus)"), {}))
        self.assertEqual((error.reply.code, error.reply.enhanced), (451, "4.4.3"))
        self.assertIn("SERVFAIL (bogus)", error.reply.text)

    def test_hosts_not_in_the_validated_mx_are_dropped(self) -> None:
        """A route host that the validated MX RRset does not name is not used; if none
        is named, the domain is deferred."""
        result = self._checked(_FakeLookups(_mx("mx2.dest.test"), {}))
        self.assertEqual(result.route.hosts, (_ROUTE.hosts[1],))
        error = self._error(_FakeLookups(_mx("evil.example"), {}))
        self.assertIn("DNSSEC-validated MX", error.reply.text)

    def test_failed_tlsa_lookup_skips_the_host(self) -> None:
        """A host whose TLSA look-up failed is not used; when all fail, defer."""
        failed = SecureAnswer("failed", reason="SERVFAIL (bogus or unavailable)")
        lookups = _FakeLookups(_mx("mx1.dest.test", "mx2.dest.test"), {"mx1.dest.test": failed})
        self.assertEqual(self._checked(lookups).route.hosts, (_ROUTE.hosts[1],))
        both = {"mx1.dest.test": failed, "mx2.dest.test": failed}
        error = self._error(_FakeLookups(_mx("mx1.dest.test", "mx2.dest.test"), both))
        self.assertIn("DNSSEC look-ups", error.reply.text)

    def test_secure_domain_without_mx_is_its_own_host(self) -> None:
        """A secure "no MX" answer makes the domain itself the validated host (implicit MX)."""
        route = Route((RouteHost("dest.test", ("192.0.2.9",)),))
        lookups = _FakeLookups(SecureAnswer("secure", ()), {"dest.test": _tlsa(f"3 1 1 {_HEX}")})
        result = self._checked(lookups, route)
        self.assertEqual(list(result.dane), ["dest.test"])

    def test_insecure_addresses_mean_no_dane(self) -> None:
        """RFC 7672 §2.2.2: a host of a secure MX RRset whose address records are not
        validated gets no DANE (its TLSA records are not even asked for) but stays
        usable; a failed address look-up makes the host unusable."""
        tlsa = _tlsa(f"3 1 1 {_HEX}")
        lookups = _FakeLookups(
            _mx("mx1.dest.test", "mx2.dest.test"),
            {"mx1.dest.test": tlsa, "mx2.dest.test": tlsa},
            {"mx1.dest.test": SecureAnswer("insecure", name="mx1.dest.test")},
        )
        result = self._checked(lookups)
        self.assertEqual((result.route, list(result.dane)), (_ROUTE, ["mx2.dest.test"]))
        self.assertNotIn("TLSA mx1.dest.test", lookups.asked)
        failed = SecureAnswer("failed", reason="SERVFAIL (bogus or unavailable)")
        lookups = _FakeLookups(
            _mx("mx1.dest.test", "mx2.dest.test"),
            {"mx2.dest.test": tlsa},
            {"mx1.dest.test": failed},
        )
        result = self._checked(lookups)
        self.assertEqual(result.route.hosts, (_ROUTE.hosts[1],))
        error = self._error(
            _FakeLookups(_mx("mx1.dest.test"), {}, {"mx1.dest.test": failed}),
            Route((_ROUTE.hosts[0],)),
        )
        self.assertIn("address records: SERVFAIL", error.reply.text)

    def test_cname_expanded_name_first(self) -> None:
        """An MX host that is a (validated) CNAME: TLSA at the expanded name is used when
        it has records, and the certificate may match either name."""
        target = "smtp.provider.test"
        lookups = _FakeLookups(
            _mx("mx1.dest.test"),
            {target: _tlsa(f"3 1 1 {_HEX}"), "mx1.dest.test": _tlsa(f"2 0 1 {_HEX}")},
            {"mx1.dest.test": SecureAnswer("secure", ("a",), name=target)},
        )
        result = self._checked(lookups, Route((_ROUTE.hosts[0],)))
        dane = result.dane["mx1.dest.test"]
        self.assertEqual(dane.tlsa, (TLSARecord(3, 1, 1, bytes.fromhex(_HEX)),))
        self.assertEqual(dane.names, (target, "mx1.dest.test"))
        self.assertEqual(lookups.asked, ["MX dest.test", "A mx1.dest.test", f"TLSA {target}"])

    def test_cname_falls_back_to_the_original_name(self) -> None:
        """No TLSA records at the expanded name (securely none): those of the original
        name are used, still with both names, the original (the TLSA base domain, sent
        as SNI) first; none at either: no DANE."""
        target = "smtp.provider.test"
        secure_none = SecureAnswer("secure", ())
        addresses = {"mx1.dest.test": SecureAnswer("secure", ("a",), name=target)}
        lookups = _FakeLookups(
            _mx("mx1.dest.test"),
            {target: secure_none, "mx1.dest.test": _tlsa(f"3 1 1 {_HEX}")},
            addresses,
        )
        result = self._checked(lookups, Route((_ROUTE.hosts[0],)))
        self.assertEqual(result.dane["mx1.dest.test"].names, ("mx1.dest.test", target))
        self.assertEqual(lookups.asked[-2:], [f"TLSA {target}", "TLSA mx1.dest.test"])
        lookups = _FakeLookups(
            _mx("mx1.dest.test"), {target: secure_none, "mx1.dest.test": secure_none}, addresses
        )
        self.assertEqual(dict(self._checked(lookups, Route((_ROUTE.hosts[0],))).dane), {})


class _Outcomes:
    def __init__(self) -> None:
        self.seen: list[TLSOutcome] = []

    def record(self, outcome: TLSOutcome) -> None:
        self.seen.append(outcome)


class WithDaneTests(SynchronousTestCase):
    def test_dane_hosts_get_the_dane_requirement(self) -> None:
        """After the MX route (and its MTA-STS requirements), a host with secure TLSA
        records gets ``dane`` with its records and name, replacing what it had; a host
        without keeps its requirement."""
        sts = TLSRequirement(mode="sts-enforce", policy_domain="dest.test")
        hosts = tuple(attrs.evolve(h, tls=sts) for h in _ROUTE.hosts)
        lookups = _FakeLookups(
            _mx("mx1.dest.test", "mx2.dest.test"), {"mx1.dest.test": _tlsa(f"3 1 1 {_HEX}")}
        )
        route = with_dane(lambda domain: succeed(Route(hosts)), lookups)
        first, second = self.successResultOf(route("Dest.Test")).hosts
        self.assertEqual(first.tls.mode, "dane")
        self.assertEqual(first.tls.tlsa, (TLSARecord(3, 1, 1, bytes.fromhex(_HEX)),))
        self.assertEqual(first.tls.names_for("mx1.dest.test"), ("mx1.dest.test",))
        self.assertEqual((first.tls.policy_type, first.tls.policy_domain), ("tlsa", "dest.test"))
        self.assertEqual(second.tls, sts)

    def test_failure_defers_and_reports_dnssec_invalid(self) -> None:
        """A bogus (SERVFAIL) answer defers the domain and reports ``dnssec-invalid``."""
        outcomes = _Outcomes()
        lookups = _FakeLookups(SecureAnswer("failed", reason="SERVFAIL (bogus or unavailable)"), {})
        route = with_dane(lambda domain: succeed(_ROUTE), lookups, outcomes)
        self.failureResultOf(route("dest.test"), RouteError)
        (outcome,) = outcomes.seen
        self.assertEqual(
            (outcome.policy_domain, outcome.policy_type, outcome.result),
            ("dest.test", "tlsa", "dnssec-invalid"),
        )

    def test_address_literals_skip_dane(self) -> None:
        """An address-literal domain has no DNS: its route is used as it is."""
        lookups = _FakeLookups(SecureAnswer("failed", reason="never asked"), {})
        literal = Route((RouteHost("192.0.2.1", ("192.0.2.1",)),))
        route = with_dane(lambda domain: succeed(literal), lookups)
        self.assertEqual(self.successResultOf(route("[192.0.2.1]")), literal)
        self.assertEqual(lookups.asked, [])


class _Connection:
    """What dane_check asks of an OpenSSL connection: the presented chain."""

    def __init__(self, chain: list[Any]) -> None:
        self._chain = chain

    def get_peer_cert_chain(self, as_cryptography: bool = False) -> list[Any]:
        return self._chain


class DaneCheckTests(SynchronousTestCase):
    def test_verdicts(self) -> None:
        """The check passes a matching chain (None) and fails a mismatch with the RFC
        8460 result ``tlsa-invalid``; DANE-TA validity uses the injected time."""
        root = issue("Root", ca=True)
        server = issue("mx1.dest.test", issuer=root, dns_names=["mx1.dest.test"])
        good = TLSRequirement(mode="dane", tlsa=(tlsa_for(server.certificate, 3, 1, 1),))
        check = dane_check(lambda: NOW.timestamp())
        chain = _Connection(list(server.presented(include_root=True)))
        self.assertIsNone(check(chain, good, "mx1.dest.test"))  # type: ignore[arg-type]
        other = TLSRequirement(mode="dane", tlsa=(tlsa_for(root.certificate, 3, 1, 1),))
        verdict = check(chain, other, "mx1.dest.test")  # type: ignore[arg-type]
        assert verdict is not None
        self.assertEqual(verdict.result, "tlsa-invalid")
        anchor = TLSRequirement(mode="dane", tlsa=(tlsa_for(root.certificate, 2, 1, 1),))
        self.assertIsNone(check(chain, anchor, "mx1.dest.test"))  # type: ignore[arg-type]
        late = dane_check(lambda: NOW.timestamp() + 365 * 86400)
        expired = late(chain, anchor, "mx1.dest.test")  # type: ignore[arg-type]
        assert expired is not None
        self.assertEqual(expired.result, "validation-failure")
