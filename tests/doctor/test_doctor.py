"""``rail doctor`` against a loopback world (:mod:`tests.doctor.fixtures`): real DNS over
UDP (and TCP) on 127.0.0.1, real TLS to stand-ins for Rail's ports, each thing broken
once."""

from __future__ import annotations

import io
import json
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.names import dns
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from rail.doctor.checks import Check
from rail.doctor.cli import doctor, format_table
from tests.doctor.fixtures import (
    CA_IDENTITY,
    DOMAIN,
    HOSTNAME,
    World,
    caa_record,
    make_world,
    policy_site,
)
from tests.support.dnsserver import txt_record

_REVERSE = "1.0.0.127.in-addr.arpa"


class _Streaming(Resource):
    """Answers every GET with 80 KiB in two writes, without a Content-Length."""

    isLeaf = True

    def render_GET(self, request: Any) -> int:
        request.write(b"x" * 40960)
        request.write(b"x" * 40960)
        request.finish()
        return NOT_DONE_YET


class DoctorTestCase(TestCase):
    """Starts the world; :meth:`run_doctor` runs the doctor against it."""

    maxDiff = None

    async def start(self, address: str = "127.0.0.1", **dns_config: object) -> World:
        directory = Path(self.mktemp()).absolute()
        directory.mkdir(parents=True)
        self.directory = directory
        world = await make_world(reactor, directory, address, **dns_config)
        self.addCleanup(world.dns.stop)
        self.addCleanup(world.stop)
        return world

    async def run_doctor(
        self, world: World, **inputs: Any
    ) -> tuple[int, str, dict[tuple[str, str], Check]]:
        """The exit code, the table printed, and the checks by (check, domain)."""
        out = io.StringIO()
        code = await doctor(
            world.inputs(**inputs),
            reactor,
            world.dns.nameservers,
            out,
            as_json=True,
            overrides=world.overrides,
        )
        report = json.loads(out.getvalue())
        checks = [Check(**c) for c in report["checks"]]
        return code, format_table(checks), {(c.check, c.domain): c for c in checks}

    def assertOnly(
        self, checks: dict[tuple[str, str], Check], key: tuple[str, str], status: str
    ) -> Check:
        """``key`` has ``status``; every other check is OK."""
        self.assertEqual(checks[key].status, status, checks[key])
        others = {k: c for k, c in checks.items() if k != key and c.status != "OK"}
        self.assertEqual(others, {})
        return checks[key]


class AllRightTests(DoctorTestCase):
    async def test_everything_ok(self) -> None:
        """With DNS, certificate and ports as Rail would have them, every line is OK,
        every check is there, and the exit code is 0."""
        world = await self.start()
        code, text, checks = await self.run_doctor(world)
        self.assertEqual({k: c for k, c in checks.items() if c.status != "OK"}, {})
        self.assertEqual(code, 0)
        names = {name for name, _ in checks}
        self.assertEqual(
            names - {n for n in names if n.startswith("dkim ")},
            {
                "a",
                "aaaa",
                "ptr 127.0.0.1",
                "certificate expiry",
                "certificate chain",
                "port 25 127.0.0.1",
                "port 465 127.0.0.1",
                "port 443 127.0.0.1",
                "mx",
                "spf",
                "dmarc",
                "mta-sts",
                "mta-sts policy",
                "tls-rpt",
                "caa",
            },
        )
        # Two selectors (ed25519 and RSA) of the one generation, for the domain and for
        # the host name (whose keys sign DSNs), which lies in the domain's zone.
        dkim = sorted(domain for name, domain in checks if name.startswith("dkim "))
        self.assertEqual(dkim, [DOMAIN, DOMAIN, HOSTNAME, HOSTNAME])

    async def test_table(self) -> None:
        """Without ``--json`` the report is a table: a header, then one line per check
        starting with its status."""
        world = await self.start()
        out = io.StringIO()
        code = await doctor(
            world.inputs(), reactor, world.dns.nameservers, out, overrides=world.overrides
        )
        lines = out.getvalue().splitlines()
        self.assertEqual(code, 0)
        self.assertEqual(lines[0].split(), ["STATUS", "CHECK", "DOMAIN", "EXPECTED", "FOUND"])
        mx = next(line for line in lines if line.split()[1] == "mx")
        self.assertEqual(mx.split(), ["OK", "mx", DOMAIN, "10", HOSTNAME, "10", HOSTNAME])

    async def test_public_address_overridden(self) -> None:
        """With a public address that is not this machine's, the overrides send the
        probes (ports, the policy fetch) to loopback: everything OK, named by the
        public address."""
        world = await self.start("192.0.2.7")
        code, _text, checks = await self.run_doctor(world)
        self.assertEqual({k: c for k, c in checks.items() if c.status != "OK"}, {})
        self.assertEqual(code, 0)
        self.assertEqual(checks[("port 25 192.0.2.7", HOSTNAME)].found, f"220 {HOSTNAME} ESMTP")
        self.assertEqual(checks[("a", HOSTNAME)].found, "192.0.2.7")

    async def test_json(self) -> None:
        """``--json`` prints ``ok``, the counts and one object per check."""
        world = await self.start()
        out = io.StringIO()
        code = await doctor(
            world.inputs(),
            reactor,
            world.dns.nameservers,
            out,
            as_json=True,
            overrides=world.overrides,
        )
        report = json.loads(out.getvalue())
        self.assertEqual(code, 0)
        self.assertTrue(report["ok"])
        self.assertEqual(report["counts"]["FAIL"], 0)
        mx = next(c for c in report["checks"] if c["check"] == "mx")
        self.assertEqual(
            mx,
            {
                "check": "mx",
                "domain": DOMAIN,
                "status": "OK",
                "expected": f"10 {HOSTNAME}",
                "found": f"10 {HOSTNAME}",
            },
        )


class BrokenRecordTests(DoctorTestCase):
    async def test_wrong_mx(self) -> None:
        """An MX pointing elsewhere is a FAIL, and the exit code is 1."""
        world = await self.start()
        world.replace(DOMAIN, dns.MX, [dns.Record_MX(10, b"mx.elsewhere.test", ttl=60)])
        code, text, checks = await self.run_doctor(world)
        check = self.assertOnly(checks, ("mx", DOMAIN), "FAIL")
        self.assertEqual(check.found, "10 mx.elsewhere.test")
        self.assertEqual(code, 1)
        self.assertIn("FAIL", text)

    async def test_bounce_domain(self) -> None:
        """The bounce domain's MX and SPF are checked (OK as published); without its MX,
        bounces cannot come back: a FAIL naming the bounce domain."""
        world = await self.start()
        bounces = f"bounces.{DOMAIN}"
        _, _, checks = await self.run_doctor(world)
        self.assertEqual(checks[("mx", bounces)].status, "OK")
        self.assertEqual(checks[("spf", bounces)].status, "OK")
        world.set_records(bounces, [])
        code, _, checks = await self.run_doctor(world)
        self.assertEqual(checks[("mx", bounces)].status, "FAIL")
        self.assertEqual(checks[("spf", bounces)].status, "FAIL")
        self.assertEqual(code, 1)

    async def test_missing_address(self) -> None:
        """No A record for the host name is a FAIL; the PTR cannot be confirmed then
        either."""
        world = await self.start()
        world.set_records(HOSTNAME, [])
        code, _text, checks = await self.run_doctor(world)
        self.assertEqual(checks[("a", HOSTNAME)].status, "FAIL")
        self.assertEqual(checks[("a", HOSTNAME)].found, "no such name (NXDOMAIN)")
        self.assertEqual(checks[("ptr 127.0.0.1", HOSTNAME)].status, "FAIL")
        self.assertEqual(code, 1)

    async def test_spf_without_rails_address(self) -> None:
        """An SPF record that does not pass Rail's address is a FAIL naming it."""
        world = await self.start()
        self._replace_txt(world, DOMAIN, "v=spf1", "v=spf1 ip4:192.0.2.1 -all")
        code, _text, checks = await self.run_doctor(world)
        check = self.assertOnly(checks, ("spf", DOMAIN), "FAIL")
        self.assertIn("does not pass 127.0.0.1", check.found)
        self.assertEqual(code, 1)

    async def test_dkim_key_differs(self) -> None:
        """A selector whose key is not Rail's is a FAIL."""
        world = await self.start()
        selector = world.inputs().domains[0].dkim[0][0]
        name = f"{selector}._domainkey.{DOMAIN}"
        world.set_records(name, [txt_record("v=DKIM1; k=ed25519; p=AAAAbogus", 60)])
        code, _text, checks = await self.run_doctor(world)
        check = self.assertOnly(checks, (f"dkim {selector}", DOMAIN), "FAIL")
        self.assertIn("key differs", check.found)
        self.assertEqual(code, 1)

    async def test_dmarc_missing(self) -> None:
        """No DMARC record is a FAIL."""
        world = await self.start()
        world.set_records(f"_dmarc.{DOMAIN}", [])
        code, _text, checks = await self.run_doctor(world)
        self.assertOnly(checks, ("dmarc", DOMAIN), "FAIL")
        self.assertEqual(code, 1)

    async def test_mta_sts_id_mismatch(self) -> None:
        """An ``_mta-sts`` id other than Rail's is a WARN (exit 0: mail still flows)."""
        world = await self.start()
        world.set_records(f"_mta-sts.{DOMAIN}", [txt_record("v=STSv1; id=20200101", 60)])
        code, _text, checks = await self.run_doctor(world)
        check = self.assertOnly(checks, ("mta-sts", DOMAIN), "WARN")
        self.assertIn("id differs", check.found)
        self.assertEqual(code, 0)

    async def test_wrong_policy(self) -> None:
        """A policy server whose enforce policy names another MX is a FAIL."""
        world = await self.start()
        await world.close(443)
        wrong = "version: STSv1\r\nmode: enforce\r\nmx: mx.elsewhere.test\r\nmax_age: 86400\r\n"
        world.serve(443, policy_site(wrong), tls=True)
        code, _text, checks = await self.run_doctor(world)
        check = self.assertOnly(checks, ("mta-sts policy", DOMAIN), "FAIL")
        self.assertIn(f"mx does not match {HOSTNAME}", check.found)
        self.assertEqual(code, 1)

    async def test_no_policy(self) -> None:
        """A policy server without the policy (404) is a FAIL."""
        world = await self.start()
        await world.close(443)
        world.serve(443, policy_site(None), tls=True)
        code, _text, checks = await self.run_doctor(world)
        check = self.assertOnly(checks, ("mta-sts policy", DOMAIN), "FAIL")
        self.assertEqual(check.found, "fetch failed: HTTP 404")
        self.assertEqual(code, 1)

    async def test_endless_policy(self) -> None:
        """A policy body over 64 KiB (sent chunked, no length announced) is a FAIL; the
        doctor stops reading it."""
        world = await self.start()
        await world.close(443)
        world.serve(443, Site(_Streaming()), tls=True)
        code, _text, checks = await self.run_doctor(world)
        check = self.assertOnly(checks, ("mta-sts policy", DOMAIN), "FAIL")
        self.assertEqual(check.found, "fetch failed: larger than 65536 octets")
        self.assertEqual(code, 1)

    async def test_tls_rpt_missing(self) -> None:
        """No TLS-RPT record while Rail publishes one is a WARN."""
        world = await self.start()
        world.set_records(f"_smtp._tls.{DOMAIN}", [])
        code, _text, checks = await self.run_doctor(world)
        self.assertOnly(checks, ("tls-rpt", DOMAIN), "WARN")
        self.assertEqual(code, 0)

    async def test_caa_forbids_the_ca(self) -> None:
        """Under ACME, a CAA record naming only another CA is a FAIL."""
        world = await self.start()
        world.replace(DOMAIN, 257, [caa_record(0, "issue", "other-ca.test")])
        code, _text, checks = await self.run_doctor(world)
        check = self.assertOnly(checks, ("caa", DOMAIN), "FAIL")
        self.assertIn("forbids the ACME CA", check.found)
        self.assertEqual(code, 1)

    async def test_caa_against_the_acme_directory(self) -> None:
        """With ``dns.caa`` empty, the CA's identities come from its ACME directory
        (``meta.caaIdentities``): a CAA record naming another CA is a FAIL, one naming
        it OK."""
        world = await self.start(caa=[])
        document = json.dumps({"meta": {"caaIdentities": [CA_IDENTITY]}}).encode()
        world.serve_acme_directory(document, self.directory)
        world.replace(DOMAIN, 257, [caa_record(0, "issue", "other-ca.test")])
        code, _text, checks = await self.run_doctor(world)
        check = self.assertOnly(checks, ("caa", DOMAIN), "FAIL")
        self.assertIn("forbids the ACME CA", check.found)
        self.assertEqual(code, 1)
        world.replace(
            DOMAIN, 257, [caa_record(0, "issue", f"{CA_IDENTITY}; validationmethods=http-01")]
        )
        code, _text, checks = await self.run_doctor(world)
        self.assertEqual(checks[("caa", DOMAIN)].status, "OK")

    async def test_acme_directory_unreachable(self) -> None:
        """An ACME directory that cannot be fetched is a WARN saying CAA was not checked
        against the CA; restricting CAA records are then a WARN too."""
        world = await self.start(caa=[])
        world.serve_acme_directory(b"{}", self.directory)
        await world.close(0)
        world.replace(DOMAIN, 257, [caa_record(0, "issue", CA_IDENTITY)])
        code, _text, checks = await self.run_doctor(world)
        self.assertEqual(checks[("acme directory", HOSTNAME)].status, "WARN")
        self.assertIn("CAA not checked", checks[("acme directory", HOSTNAME)].found)
        self.assertEqual(checks[("caa", DOMAIN)].status, "WARN")
        self.assertEqual(code, 0)

    async def test_ptr_mismatch(self) -> None:
        """A PTR naming a host that does not resolve back to the address is a FAIL."""
        world = await self.start()
        world.set_records(_REVERSE, [dns.Record_PTR(b"host.isp.test", ttl=60)])
        code, _text, checks = await self.run_doctor(world)
        check = self.assertOnly(checks, ("ptr 127.0.0.1", HOSTNAME), "FAIL")
        self.assertEqual(check.found, "host.isp.test (not forward-confirmed)")
        self.assertEqual(code, 1)

    def _replace_txt(self, world: World, name: str, prefix: str, text: str) -> None:
        kept = [
            r
            for r in world.records(name)
            if not (r.TYPE == dns.TXT and r.data[0].startswith(prefix.encode()))
        ]
        world.set_records(name, [*kept, txt_record(text, 60)])


class HostTests(DoctorTestCase):
    async def test_certificate_near_expiry(self) -> None:
        """A certificate three days from expiry is a FAIL (ACME should have renewed)."""
        world = await self.start()
        leaf = world.material.chain[0]
        code, _text, checks = await self.run_doctor(
            world, now=leaf.not_valid_after_utc - timedelta(days=3)
        )
        check = self.assertOnly(checks, ("certificate expiry", HOSTNAME), "FAIL")
        self.assertIn("(3 days left)", check.found)
        self.assertEqual(code, 1)

    async def test_closed_port(self) -> None:
        """A public port nothing answers on is a FAIL."""
        world = await self.start()
        await world.close(465)
        world.ports[465] = self._closed_port()
        code, _text, checks = await self.run_doctor(world)
        check = self.assertOnly(checks, ("port 465 127.0.0.1", HOSTNAME), "FAIL")
        self.assertIn("refused", check.found.lower())
        self.assertEqual(code, 1)

    def _closed_port(self) -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
