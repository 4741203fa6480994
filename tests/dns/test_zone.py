"""The records Rail publishes for each local domain, and their zone-file form."""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from rail.config.schema import DNS
from rail.dns.mtasts import policy_id, policy_text
from rail.dns.records import AAAA, CAA, MX, NS, SOA, TXT, A, Record
from rail.dns.zone import Zone, build_zones, digest, domain_records
from rail.dns.zonefile import record_line, zone_text
from tests.dns.helpers import CONFIG, ED25519, HOSTNAME, LONG, RSA, zones


def _at(zone: Zone, name: str, rtype: int) -> list[Record]:
    return [r for r in zone.records if r.name == name and r.type == rtype]


def _txt(zone: Zone, name: str) -> list[str]:
    return ["".join(r.data.strings) for r in _at(zone, name, 16) if isinstance(r.data, TXT)]


class ZoneContentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.com, self.org = zones()

    def test_soa(self) -> None:
        """The SOA comes first: primary NS, hostmaster@domain, the serial given, and a
        minimum (negative TTL) equal to the record TTL."""
        soa = self.com.records[0]
        self.assertEqual(soa.name, "example.com")
        self.assertEqual(soa.ttl, 300)
        self.assertEqual(
            soa.data,
            SOA("mail.example.com", "hostmaster.example.com", 7, 3600, 900, 1209600, 300),
        )
        self.assertEqual(self.com.serial, 7)

    def test_ns_default_and_configured(self) -> None:
        """NS is the host name unless dns.nameservers lists names; in-zone name servers
        get the host's addresses so the zone is complete."""
        self.assertEqual([r.data for r in _at(self.com, "example.com", 2)], [NS(HOSTNAME)])
        config = attrs.evolve(CONFIG, nameservers=("ns1.example.com", "ns.other.net"))
        (zone,) = build_zones(["example.com"], HOSTNAME, config, {})
        self.assertEqual(
            [r.data for r in _at(zone, "example.com", 2)],
            [NS("ns1.example.com"), NS("ns.other.net")],
        )
        self.assertEqual([r.data for r in _at(zone, "ns1.example.com", 1)], [A("192.0.2.10")])
        self.assertEqual(zone.soa.data.mname, "ns1.example.com")  # type: ignore[union-attr]

    def test_bounce_domains(self) -> None:
        """With return paths on, each domain's bounce domain has an MX to the host and the
        domain's own SPF record (SPF of the return path passes and aligns with the From
        domain under relaxed DMARC); off, neither exists. A template outside every zone
        publishes nothing."""
        com, org = build_zones(
            ["example.com", "example.org"], HOSTNAME, CONFIG, {}, bounce_template="bounces.{domain}"
        )
        for zone, domain in ((com, "example.com"), (org, "example.org")):
            name = f"bounces.{domain}"
            self.assertEqual([r.data for r in _at(zone, name, 15)], [MX(10, HOSTNAME)])
            self.assertEqual(_txt(zone, name), _txt(zone, domain)[:1])
            self.assertTrue(_txt(zone, name)[0].startswith("v=spf1 mx ip4:192.0.2.10"))
        self.assertEqual(_at(self.com, "bounces.example.com", 15), [])
        outside = build_zones(
            ["example.com"], HOSTNAME, CONFIG, {}, bounce_template="{domain}.rp.example.net"
        )
        self.assertEqual([r for r in outside[0].records if "rp.example.net" in r.name], [])

    def test_mx_and_host_addresses(self) -> None:
        """MX 10 points at the host name; the host name's A/AAAA live in the zone that
        contains it, and nowhere else."""
        self.assertEqual([r.data for r in _at(self.com, "example.com", 15)], [MX(10, HOSTNAME)])
        self.assertEqual([r.data for r in _at(self.org, "example.org", 15)], [MX(10, HOSTNAME)])
        self.assertEqual([r.data for r in _at(self.com, HOSTNAME, 1)], [A("192.0.2.10")])
        self.assertEqual([r.data for r in _at(self.com, HOSTNAME, 28)], [AAAA("2001:db8::10")])
        self.assertEqual([r for r in self.org.records if r.name == HOSTNAME], [])

    def test_spf(self) -> None:
        """SPF: mx, the addresses, the configured includes, -all; the host name (the HELO
        identity) gets its own record."""
        self.assertEqual(
            _txt(self.com, "example.com"),
            ["v=spf1 mx ip4:192.0.2.10 ip6:2001:db8::10 include:_spf.example.net -all"],
        )
        self.assertEqual(_txt(self.com, HOSTNAME), ["v=spf1 a -all"])

    def test_dmarc(self) -> None:
        """_dmarc carries the policy and rua when set, only the policy otherwise."""
        self.assertEqual(
            _txt(self.org, "_dmarc.example.org"),
            ["v=DMARC1; p=reject; rua=mailto:dmarc@example.com"],
        )
        (zone,) = build_zones(
            ["example.org"], HOSTNAME, attrs.evolve(CONFIG, dmarc_rua=None, dmarc_policy="none"), {}
        )
        self.assertEqual(_txt(zone, "_dmarc.example.org"), ["v=DMARC1; p=none"])

    def test_mta_sts(self) -> None:
        """_mta-sts carries the policy's id; mta-sts.<domain> has the host's addresses."""
        text = policy_text("enforce", HOSTNAME, 7 * 86400)
        self.assertEqual(_txt(self.org, "_mta-sts.example.org"), [f"v=STSv1; id={policy_id(text)}"])
        self.assertEqual(
            [r.data for r in self.org.records if r.name == "mta-sts.example.org"],
            [A("192.0.2.10"), AAAA("2001:db8::10")],
        )

    def test_mta_sts_id_follows_policy(self) -> None:
        """Changing the mode or max_age changes the id; the same policy keeps it."""
        (same,) = build_zones(["example.org"], HOSTNAME, CONFIG, {})
        (other,) = build_zones(
            ["example.org"], HOSTNAME, attrs.evolve(CONFIG, mta_sts_mode="testing"), {}
        )
        (longer,) = build_zones(
            ["example.org"], HOSTNAME, attrs.evolve(CONFIG, mta_sts_max_age=86400.0), {}
        )
        ids = [_txt(z, "_mta-sts.example.org")[0] for z in (self.org, same, other, longer)]
        self.assertEqual(ids[0], ids[1])
        self.assertEqual(len(set(ids)), 3)

    def test_tls_rpt_and_caa(self) -> None:
        """_smtp._tls and CAA are published when configured, absent otherwise."""
        self.assertEqual(
            _txt(self.org, "_smtp._tls.example.org"), ["v=TLSRPTv1; rua=mailto:tls@example.com"]
        )
        self.assertEqual(
            [r.data for r in _at(self.org, "example.org", 257)],
            [CAA(0, "issue", "letsencrypt.org")],
        )
        bare = attrs.evolve(CONFIG, tls_rpt=None, caa=())
        (zone,) = build_zones(["example.org"], HOSTNAME, bare, {})
        self.assertEqual(_txt(zone, "_smtp._tls.example.org"), [])
        self.assertEqual(_at(zone, "example.org", 257), [])

    def test_dkim_split(self) -> None:
        """Each published selector has a TXT record at <selector>._domainkey, split into
        strings of at most 255 octets that join to the key record."""
        for key in (ED25519, RSA, LONG):
            (record,) = _at(self.com, f"{key.selector}._domainkey.example.com", 16)
            assert isinstance(record.data, TXT)
            self.assertEqual("".join(record.data.strings), key.txt)
            self.assertTrue(all(len(s) <= 255 for s in record.data.strings))
        (rsa,) = _at(self.com, "s1r._domainkey.example.com", 16)
        self.assertEqual([len(s) for s in rsa.data.strings], [255, 155])  # type: ignore[union-attr]

    def test_hostname_keys_go_to_its_zone(self) -> None:
        """Keys of the host name (DSNs are signed by it) are published in the zone that
        contains it; keys of a domain outside every zone are not published."""
        keys = {HOSTNAME: [ED25519], "elsewhere.net": [RSA]}
        (zone,) = build_zones(["example.com"], HOSTNAME, CONFIG, keys)
        names = {r.name for r in zone.records}
        self.assertIn("s1e._domainkey.mail.example.com", names)
        self.assertFalse(any("elsewhere" in n for n in names))

    def test_nested_zones(self) -> None:
        """A name in two local domains belongs to the more specific one."""
        parent, child = build_zones(
            ["example.com", "mail.example.com"], HOSTNAME, CONFIG, {HOSTNAME: [ED25519]}
        )
        self.assertFalse(any(r.name.endswith("mail.example.com") for r in parent.records))
        self.assertIn("s1e._domainkey.mail.example.com", {r.name for r in child.records})
        self.assertEqual(_at(child, HOSTNAME, 1)[0].data, A("192.0.2.10"))

    def test_explicit_ttls(self) -> None:
        """Every record has the configured TTL."""
        self.assertEqual({r.ttl for z in (self.com, self.org) for r in z.records}, {300})

    def test_no_addresses(self) -> None:
        """Without dns.ipv4/ipv6, no A/AAAA and SPF is mx alone."""
        config = DNS()
        (zone,) = build_zones(["example.com"], HOSTNAME, config, {})
        self.assertEqual([r for r in zone.records if r.type in (1, 28)], [])
        self.assertEqual(_txt(zone, "example.com"), ["v=spf1 mx -all"])

    def test_digest(self) -> None:
        """The digest depends on the content only, not on record order."""
        records = domain_records(["example.com"], HOSTNAME, CONFIG, {})["example.com"]
        self.assertEqual(digest(records), digest(list(reversed(records))))
        changed = domain_records(["example.com"], HOSTNAME, CONFIG, {"example.com": [ED25519]})[
            "example.com"
        ]
        self.assertNotEqual(digest(records), digest(changed))


class ZoneFileTests(SynchronousTestCase):
    def test_lines(self) -> None:
        """Absolute names, explicit TTL and class, quoted TXT strings and CAA values."""
        self.assertEqual(
            record_line(Record("example.com", 300, MX(10, HOSTNAME))),
            "example.com.\t300\tIN\tMX\t10 mail.example.com.",
        )
        self.assertEqual(
            record_line(Record("x.example.com", 60, TXT(("a", 'q"b\\')))),
            'x.example.com.\t60\tIN\tTXT\t"a" "q\\"b\\\\"',
        )
        self.assertEqual(
            record_line(Record("example.com", 60, CAA(0, "issue", "letsencrypt.org"))),
            'example.com.\t60\tIN\tCAA\t0 issue "letsencrypt.org"',
        )

    def test_zone_text(self) -> None:
        """$ORIGIN and $TTL first, the SOA as the first record, one line per record."""
        com = zones()[0]
        lines = zone_text(com).splitlines()
        self.assertEqual(lines[1:3], ["$ORIGIN example.com.", "$TTL 300"])
        self.assertTrue(lines[3].startswith("example.com.\t300\tIN\tSOA\tmail.example.com. "))
        self.assertEqual(len(lines), 3 + len(com.records))


class PolicyTests(SynchronousTestCase):
    def test_text(self) -> None:
        """The policy file has the four fields, CRLF-terminated (RFC 8461 §3.2)."""
        self.assertEqual(
            policy_text("enforce", HOSTNAME, 604800.0),
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n",
        )

    def test_id(self) -> None:
        """The id is 20 alphanumeric characters, stable for the same text."""
        text = policy_text("testing", HOSTNAME, 86400)
        self.assertEqual(policy_id(text), policy_id(text))
        self.assertRegex(policy_id(text), r"^[0-9a-f]{20}$")
        self.assertNotEqual(policy_id(text), policy_id(text.replace("testing", "enforce")))
