"""The doctor's verdicts on plain values: which differences are OK, WARN or FAIL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from twisted.trial.unittest import SynchronousTestCase

from rail.dns.records import CAA, MX
from rail.doctor.certificate import check_chain, check_expiry
from rail.doctor.checks import (
    Fetch,
    Lookup,
    PortAnswer,
    caa_identities,
    check_addresses,
    check_caa,
    check_dmarc,
    check_mta_sts_policy,
    check_mx,
    check_port,
    check_ptr,
    check_spf,
    check_tls_rpt,
)
from rail.pki.ca import create_ca
from rail.pki.issue import issue_server_certificate
from rail.pki.keys import generate_private_key

HOST = "mail.example.test"
DOMAIN = "example.test"
SPF = "v=spf1 mx ip4:192.0.2.7 -all"
POLICY = f"version: STSv1\r\nmode: enforce\r\nmx: {HOST}\r\nmax_age: 604800\r\n"
NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)


def _spf(record: str, addresses: tuple[str, ...] = ("192.0.2.7",)) -> str:
    return check_spf(DOMAIN, SPF, addresses, HOST, Lookup((record,))).status


class LookupFailureTests(SynchronousTestCase):
    def test_failed_lookup_is_a_fail(self) -> None:
        """A question without an answer (timeout, SERVFAIL) is a FAIL that says so,
        whatever the check."""
        check = check_mx(DOMAIN, (MX(10, HOST),), Lookup(error="timeout"))
        self.assertEqual((check.status, check.found), ("FAIL", "lookup failed: timeout"))
        check = check_tls_rpt(DOMAIN, None, Lookup(error="SERVFAIL"))
        self.assertEqual(check.status, "FAIL")


class MXTests(SynchronousTestCase):
    def test_extra_host_is_a_warning(self) -> None:
        """Rail's host best placed plus a backup MX: WARN (mail there bypasses Rail)."""
        found = Lookup((MX(10, HOST), MX(20, "backup.example.test")))
        self.assertEqual(check_mx(DOMAIN, (MX(10, HOST),), found).status, "WARN")

    def test_not_preferred_is_a_warning(self) -> None:
        """Rail's host behind another host: WARN."""
        found = Lookup((MX(20, HOST), MX(10, "other.example.test")))
        self.assertEqual(check_mx(DOMAIN, (MX(10, HOST),), found).status, "WARN")

    def test_every_node(self) -> None:
        """With several nodes (``dns.nodes``), all of them as MX hosts is OK; one of them
        missing is a WARN."""
        nodes = (MX(10, HOST), MX(10, "mx2.example.test"))
        self.assertEqual(check_mx(DOMAIN, nodes, Lookup(nodes)).status, "OK")
        self.assertEqual(check_mx(DOMAIN, nodes, Lookup(nodes[:1])).status, "WARN")

    def test_no_mx(self) -> None:
        """No MX record is a FAIL."""
        self.assertEqual(check_mx(DOMAIN, (MX(10, HOST),), Lookup()).status, "FAIL")


class AddressTests(SynchronousTestCase):
    def test_extra_address_is_a_warning(self) -> None:
        """An address Rail does not publish besides its own: WARN."""
        found = Lookup(("192.0.2.7", "192.0.2.8"))
        self.assertEqual(check_addresses("a", HOST, ("192.0.2.7",), found).status, "WARN")

    def test_ipv6_compared_canonically(self) -> None:
        """IPv6 addresses compare by value, not spelling."""
        found = Lookup(("2001:db8:0:0::1",))
        self.assertEqual(check_addresses("aaaa", HOST, ("2001:db8::1",), found).status, "OK")


class SPFTests(SynchronousTestCase):
    def test_other_record_passing_rail_is_ok(self) -> None:
        """A record unlike Rail's that still passes its address (ip4 network) is OK."""
        self.assertEqual(_spf("v=spf1 ip4:192.0.2.0/24 include:_spf.other.test ~all"), "OK")

    def test_include_before_the_address_is_a_warning(self) -> None:
        """When the answer depends on an ``include:``, the doctor cannot tell: WARN."""
        self.assertEqual(_spf("v=spf1 include:_spf.other.test -all"), "WARN")

    def test_failing_all(self) -> None:
        """A record that ends in ``-all`` before naming Rail fails it: FAIL."""
        self.assertEqual(_spf("v=spf1 ip4:198.51.100.1 -all"), "FAIL")

    def test_several_records(self) -> None:
        """Two SPF records are a permerror: FAIL."""
        found = Lookup((SPF, "v=spf1 -all"))
        self.assertEqual(check_spf(DOMAIN, SPF, ("192.0.2.7",), HOST, found).status, "FAIL")

    def test_other_txt_records_ignored(self) -> None:
        """TXT records that are not SPF do not count."""
        found = Lookup(("google-site-verification=abc", SPF))
        self.assertEqual(check_spf(DOMAIN, SPF, ("192.0.2.7",), HOST, found).status, "OK")

    def test_ipv6(self) -> None:
        """ip6 networks pass IPv6 addresses."""
        self.assertEqual(_spf("v=spf1 ip6:2001:db8::/32 -all", ("2001:db8::5",)), "OK")


class DMARCTests(SynchronousTestCase):
    def test_weaker_policy_is_a_warning(self) -> None:
        """``p=none`` where Rail publishes ``p=reject``: WARN."""
        found = Lookup(("v=DMARC1; p=none",))
        self.assertEqual(check_dmarc(DOMAIN, "v=DMARC1; p=reject", found).status, "WARN")


class PolicyTests(SynchronousTestCase):
    def test_testing_mode_is_a_warning(self) -> None:
        """A policy in testing mode naming another MX does not stop mail: WARN."""
        text = "version: STSv1\nmode: testing\nmx: other.test\nmax_age: 86400\n"
        self.assertEqual(check_mta_sts_policy(DOMAIN, POLICY, HOST, Fetch(text)).status, "WARN")

    def test_wildcard_mx_matches(self) -> None:
        """``mx: *.example.test`` covers Rail's host; other differences: WARN."""
        text = "version: STSv1\nmode: enforce\nmx: *.example.test\nmax_age: 86400\n"
        self.assertEqual(check_mta_sts_policy(DOMAIN, POLICY, HOST, Fetch(text)).status, "WARN")

    def test_same_policy_with_lf(self) -> None:
        """The same fields with LF line ends: OK."""
        text = POLICY.replace("\r\n", "\n")
        self.assertEqual(check_mta_sts_policy(DOMAIN, POLICY, HOST, Fetch(text)).status, "OK")

    def test_not_a_policy(self) -> None:
        """A page that is not a policy: FAIL."""
        found = Fetch("<html>hello</html>")
        self.assertEqual(check_mta_sts_policy(DOMAIN, POLICY, HOST, found).status, "FAIL")


class CAATests(SynchronousTestCase):
    def test_absent_under_acme(self) -> None:
        """No CAA allows every CA: OK under ACME."""
        self.assertEqual(check_caa(DOMAIN, (), (), Lookup(), None).status, "OK")

    def test_restricting_without_known_identity(self) -> None:
        """Restricting records while ``dns.caa`` does not name the ACME CA: WARN."""
        found = Lookup((CAA(0, "issue", "some-ca.test"),))
        self.assertEqual(check_caa(DOMAIN, (), (), found, DOMAIN).status, "WARN")

    def test_identity_with_parameters(self) -> None:
        """An issue value with parameters names the CA before the ``;``."""
        found = Lookup((CAA(0, "issue", "ca.test; accounturi=https://ca.test/acct/1"),))
        self.assertEqual(check_caa(DOMAIN, (), ("ca.test",), found, DOMAIN).status, "OK")

    def test_found_at_parent(self) -> None:
        """A record set found higher up says where it was."""
        found = Lookup((CAA(0, "issue", "ca.test"),))
        check = check_caa("a.example.test", (), ("ca.test",), found, DOMAIN)
        self.assertEqual((check.status, check.found), ("OK", f'0 issue "ca.test" (at {DOMAIN})'))

    def test_without_acme_difference_is_a_warning(self) -> None:
        """Without ACME, records other than Rail's are only a WARN."""
        found = Lookup((CAA(0, "issue", "other.test"),))
        expected = (CAA(0, "issue", "ca.test"),)
        self.assertEqual(check_caa(DOMAIN, expected, None, found, DOMAIN).status, "WARN")

    def test_unknown_critical_tag(self) -> None:
        """An unknown tag with the critical flag forbids all issuance: FAIL."""
        found = Lookup((CAA(128, "future", "x"),))
        self.assertEqual(check_caa(DOMAIN, (), ("ca.test",), found, DOMAIN).status, "FAIL")


class DirectoryTests(SynchronousTestCase):
    def test_caa_identities(self) -> None:
        """An ACME directory's ``meta.caaIdentities``, lower-cased; none for anything
        else."""
        document = '{"newOrder": "x", "meta": {"caaIdentities": ["LetsEncrypt.org"]}}'
        self.assertEqual(caa_identities(document), ("letsencrypt.org",))
        for other in ('{"meta": {}}', "[]", "not json", '{"meta": {"caaIdentities": "x"}}'):
            self.assertEqual(caa_identities(other), ())


class PTRTests(SynchronousTestCase):
    def test_other_confirmed_name_is_a_warning(self) -> None:
        """A PTR to another name that resolves back: WARN (FCrDNS holds, the name
        differs from the HELO name)."""
        check = check_ptr("192.0.2.7", HOST, Lookup(("vps.isp.test",)), [Lookup(("192.0.2.7",))])
        self.assertEqual(check.status, "WARN")

    def test_no_ptr(self) -> None:
        """No PTR: FAIL."""
        self.assertEqual(check_ptr("192.0.2.7", HOST, Lookup(nxdomain=True), []).status, "FAIL")


class PortTests(SynchronousTestCase):
    def test_unexpected_greeting_is_a_warning(self) -> None:
        """Something answering without ``220``: WARN."""
        answer = PortAnswer(True, "554 go away", banner_ok=False)
        self.assertEqual(check_port(25, "192.0.2.7", HOST, "greeting", answer).status, "WARN")


class CertificateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = create_ca("Test CA", NOW, "ecdsa-p256")
        key = generate_private_key("ecdsa-p256")
        self.leaf = issue_server_certificate(
            self.ca, HOST, (), key.public_key(), NOW, timedelta(days=90)
        )

    def test_expiry_windows(self) -> None:
        """More than 21 days left: OK; fewer: WARN; fewer than 7, or expired: FAIL."""
        end = self.leaf.not_valid_after_utc
        statuses = [
            check_expiry(HOST, self.leaf, end - timedelta(days=d), None).status
            for d in (30, 20, 6, -1)
        ]
        self.assertEqual(statuses, ["OK", "WARN", "FAIL", "FAIL"])

    def test_acme_renewal_overdue(self) -> None:
        """Under ACME, 25 days left with renewal due at 30 is a WARN."""
        end = self.leaf.not_valid_after_utc
        check = check_expiry(HOST, self.leaf, end - timedelta(days=25), timedelta(days=30))
        self.assertEqual(check.status, "WARN")
        self.assertIn("ACME renewal is overdue", check.found)

    def test_untrusted_chain(self) -> None:
        """A chain to a root not trusted: FAIL, or WARN under ``tls.self_signed``."""
        other = create_ca("Other CA", NOW, "ecdsa-p256").certificate
        self.assertEqual(
            check_chain(HOST, [self.leaf], [other], NOW, self_signed=False).status, "FAIL"
        )
        self.assertEqual(
            check_chain(HOST, [self.leaf], [other], NOW, self_signed=True).status, "WARN"
        )

    def test_wrong_name(self) -> None:
        """A certificate not naming the host name: FAIL."""
        check = check_chain(
            "other.example.test", [self.leaf], [self.ca.certificate], NOW, self_signed=False
        )
        self.assertEqual(check.status, "FAIL")

    def test_trusted_chain(self) -> None:
        """A chain to a trusted root for the host name: OK."""
        check = check_chain(HOST, [self.leaf], [self.ca.certificate], NOW, self_signed=False)
        self.assertEqual(check.status, "OK")
