"""Interop: a forwarding route re-sends inbound mail to a real Postfix, with SRS and ARC,
and that Postfix's bounce comes back through the SRS address to the original sender's MX.

Everything on loopback: a DNS server (the test's) for the outside domains, Rail's own DNS
for ``rail.test`` (its SPF), two private Postfix instances sharing one port on
127.0.0.1 (``mx.mailbox.test``, the final mailbox host, which relays everything else to
Rail's port 25) and 127.0.0.2 (``mx.outside.test``, the original sender's MX). The
checks are the libraries the world uses: pyspf on the SRS envelope against Rail's SPF,
dkimpy's ARC verifier on what Postfix stored (i=1 for fresh mail; i=2 with cv=pass for
mail that arrived sealed), dkimpy's DKIM verifier on Rail's and the original signatures.
"""

from __future__ import annotations

import re
import smtplib
from typing import Any

import dkim
import dns.resolver
import spf  # type: ignore[import-untyped]
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.names import dns as names_dns
from twisted.trial.unittest import TestCase

from rail.dkim.keys import KeyStore
from tests.forward.helpers import other_rsa_key
from tests.integration.processes import free_port, wait_for_port
from tests.interop.helpers import RunningRail, start_rail
from tests.interop.test_delivery import _accepts, _wait_for
from tests.support.dnsserver import start_dns, txt_record
from tests.support.postfix import RunningPostfix, need_postfix, start_postfix

_GONE = (
    "transport_maps = inline:{ {gone@mailbox.test=error:5.1.1 mailbox gone} }\n"
    "smtpd_reject_unlisted_recipient = no\n"
    "smtpd_recipient_restrictions = check_recipient_access"
    " inline:{ {refused@mailbox.test=550 5.1.1 no such user} }\n"
)


def _original(subject: str) -> bytes:
    return (
        "From: Customer <customer@outside.test>\r\n"
        "To: <alias@rail.test>\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@outside.test>\r\n"
        "Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
        "\r\n"
        "Hello through the forwarder.\r\n"
        ".a line with a leading dot\r\n"
    ).encode()


def _send(rail: RunningRail, sender: str, recipient: str, data: bytes) -> tuple[int, bytes]:
    """One message to Rail's port 25 (blocking); the reply to RCPT if refused, else DATA's."""
    with smtplib.SMTP("127.0.0.1", rail.inbound_port, timeout=20) as client:
        client.ehlo("mta.outside.test")
        client.mail(sender)
        code, text = client.rcpt(recipient)
        if code != 250:
            return code, text
        return client.data(data)


def _crlf(stored: bytes) -> bytes:
    return stored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class ForwardInteropTests(TestCase):
    timeout = 180

    async def test_forward_srs_arc_and_bounce(self) -> None:
        """Fresh mail to an alias reaches the final Postfix byte-identical under Rail's
        trace, ARC (i=1, verifies) and DKIM (d=rail.test) fields, its own signature still
        valid; pyspf passes the SRS envelope against Rail's published SPF; mail that
        arrived ARC-sealed is forwarded at i=2 with cv=pass; the final Postfix's bounce
        to the SRS address reaches the original sender's MX with the null sender, and a
        forged SRS bounce is refused at RCPT and logged."""
        need_postfix()
        outside_pem, outside_txt = other_rsa_key()
        first_pem, first_txt = other_rsa_key()
        records: dict[str, list[Any]] = {
            "outside.test": [
                txt_record("v=spf1 ip4:127.0.0.1 -all", ttl=60),
                names_dns.Record_MX(10, b"mx.outside.test", ttl=60),
            ],
            "mx.outside.test": [names_dns.Record_A("127.0.0.2", ttl=60)],
            "mailbox.test": [names_dns.Record_MX(10, b"mx.mailbox.test", ttl=60)],
            "mx.mailbox.test": [names_dns.Record_A("127.0.0.1", ttl=60)],
            "s1._domainkey.outside.test": [txt_record(outside_txt, ttl=60)],
            "s1._domainkey.first.test": [txt_record(first_txt, ttl=60)],
        }
        test_dns = await start_dns(reactor, records)
        self.addCleanup(test_dns.stop)
        port = free_port()  # both Postfix instances, on 127.0.0.1 and 127.0.0.2

        def configure(document: dict[str, Any]) -> None:
            nameservers = [f"127.0.0.1:{test_dns.port}"]
            document["inbound"]["nameservers"] = nameservers
            document["inbound"]["routes"] = [
                {
                    "match": "alias@rail.test",
                    "forward": ["bob@mailbox.test", "gone@mailbox.test", "refused@mailbox.test"],
                },
                {"match": "sealed@rail.test", "forward": ["carol@mailbox.test"]},
            ]
            document["delivery"].update(hold=False, nameservers=nameservers, port=port)

        rail = await start_rail(self, configure)
        await wait_for_port(rail.inbound_port, rail.server)
        final = start_postfix(
            port, ("mailbox.test",), hostname="mx.mailbox.test", relay_to=rail.inbound_port,
            extra=_GONE,
        )  # fmt: skip
        self.addCleanup(final.stop)
        origin = start_postfix(
            port, ("outside.test",), hostname="mx.outside.test", address="127.0.0.2"
        )
        self.addCleanup(origin.stop)
        # Both: mail that reached 127.0.0.2 before its Postfix listened waited a minute for
        # its retry, which the test's deadline did not allow for (a failed CI run).
        await _wait_for(lambda: _accepts(port) and _accepts(port, "127.0.0.2"), timeout=20)

        def diagnose() -> str:
            logs = [p.log.read_text(errors="replace") for p in (final, origin) if p.log.exists()]
            return f"Rail:\n{rail.server.output.decode()}\nPostfix:\n" + "\n".join(logs)

        keys = KeyStore.open(rail.directory / "data" / "dkim")
        published = {
            f"{key.selector}._domainkey.rail.test": key.txt
            for key in keys.published("rail.test", None)
        }
        published["s1._domainkey.outside.test"] = outside_txt
        published["s1._domainkey.first.test"] = first_txt

        def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
            found = published.get(name.decode().rstrip("."))
            return None if found is None else found.encode()

        # 1. Fresh mail, DKIM-signed by its author's domain.
        original = _original("fresh mail")
        signed = dkim.sign(original, b"s1", b"outside.test", outside_pem) + original
        code, text = await deferToThread(
            _send, rail, "customer@outside.test", "alias@rail.test", signed
        )
        self.assertEqual(code, 250, text)
        try:
            [fresh] = await _wait_for(lambda: _to(final, "bob@mailbox.test"), timeout=60)
        except AssertionError:
            self.fail(diagnose())
        message = _crlf(fresh)
        self.assertTrue(message.endswith(signed), message)
        head = message.split(b"\r\n\r\n", 1)[0]
        return_path = re.search(rb"(?m)^Return-Path: <(SRS0=[^>]+@rail\.test)>", head)
        assert return_path is not None, head
        cv, results, reason = dkim.arc_verify(message, dnsfunc=dnsfunc)
        self.assertEqual(cv, dkim.CV_Pass, reason)
        self.assertEqual([r["instance"] for r in results], [1])
        self.assertIn(b"cv=none", head)
        signatures = [
            dkim.DKIM(message).verify(idx=i, dnsfunc=dnsfunc)
            for i in range(len(re.findall(rb"(?mi)^DKIM-Signature:", head)))
        ]
        self.assertEqual(signatures, [True, True, True])  # Rail's two, the author's one
        self.assertEqual(
            sorted(set(re.findall(rb"(?i)\bd=([a-z.]+);", head.replace(b"\r\n", b"")))),
            [b"outside.test", b"rail.test"],
        )
        peer = re.search(rb"Received: from \S+ \(\S+ \[(127\.\d+\.\d+\.\d+)\]\)", head)
        assert peer is not None, head
        verdict = await deferToThread(_spf, rail, peer[1].decode(), return_path[1].decode())
        self.assertEqual(verdict[0], "pass", verdict)

        # 2. Mail that arrives with an ARC set gets the next instance, cv=pass.
        first_results = (
            b"Authentication-Results: mx.first.test; spf=pass smtp.mailfrom=outside.test\r\n"
        )
        sealed = _original("sealed mail")
        sealed = (
            b"".join(
                dkim.arc_sign(
                    first_results + sealed, b"s1", b"first.test", first_pem, b"mx.first.test"
                )
            )
            + sealed
        )
        code, text = await deferToThread(
            _send, rail, "customer@outside.test", "sealed@rail.test", sealed
        )
        self.assertEqual(code, 250, text)
        [second] = await _wait_for(lambda: _to(final, "carol@mailbox.test"), timeout=60)
        message = _crlf(second)
        self.assertTrue(message.endswith(sealed))
        head = message.split(b"\r\n\r\n", 1)[0]
        self.assertRegex(head.decode(), r"(?m)^ARC-Seal: i=2; cv=pass; a=rsa-sha256; d=rail\.test;")
        self.assertRegex(head.decode(), r"(?m)^ARC-Authentication-Results: i=2; rail\.test;")
        self.assertIn(b"arc=pass", head)
        cv, results, reason = dkim.arc_verify(message, dnsfunc=dnsfunc)
        self.assertEqual(cv, dkim.CV_Pass, reason)
        self.assertEqual(sorted(r["instance"] for r in results), [1, 2])

        # 3. The final Postfix accepted gone@ and bounced it later: its DSN to the SRS
        # address comes back through Rail to the original sender's MX. It refused
        # refused@ at RCPT: Rail's own DSN goes straight to the original sender.
        try:
            bounces = await _wait_for(
                lambda: (lambda found: found if len(found) == 2 else None)(
                    _to(origin, "customer@outside.test")
                ),
                timeout=60,
            )
        except AssertionError:
            self.fail(diagnose())
        [returned] = [b for b in bounces if b"gone@mailbox.test" in b]
        [own] = [b for b in bounces if b"refused@mailbox.test" in b]
        for bounce in (returned, own):
            text = bounce.decode(errors="replace")
            self.assertRegex(text, r"(?m)^Return-Path: <>$")
            self.assertRegex(text, r"(?m)^DKIM-Signature: .*d=rail\.test;")
        self.assertIn(b"mailbox gone", returned)
        self.assertRegex(
            returned.decode(), r"(?m)^From: Mail Delivery System <MAILER-DAEMON@mx\.mailbox\.test>"
        )
        self.assertIn(b"no such user", own)

        # 4. A forged bounce to an SRS address is refused and logged, never returned.
        forged = re.sub(rb"^SRS0=[^=]+=", b"SRS0=AAAA=", return_path[1]).decode()
        code, text = await deferToThread(_send, rail, "", forged, b"Subject: x\r\n\r\nx\r\n")
        self.assertEqual((code, text), (550, b"5.1.1 User unknown"))
        self.assertIn(b"srs bounce dropped", bytes(rail.server.output))
        self.assertEqual(len(_to(origin, "customer@outside.test")), 2)


def _to(postfix: RunningPostfix, address: str) -> list[bytes]:
    """Messages Postfix stored for ``address`` (by its Delivered-To field)."""
    marker = f"Delivered-To: {address}\n".encode()
    return [m for m in postfix.delivered() if marker in m]


def _spf(rail: RunningRail, ip: str, sender: str) -> tuple[str, str]:
    """pyspf's verdict for ``sender`` from ``ip``, its DNS questions sent to Rail's own
    DNS server on loopback (which is authoritative for rail.test)."""
    spec = rail.config.listen.dns
    assert spec is not None
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = spec.port

    def lookup(name: str, qtype: str, strict: Any = True, timeout: Any = 20) -> list[Any]:
        try:
            answers = resolver.resolve(name, qtype, lifetime=10)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            return []
        if qtype == "TXT":
            return [((name, qtype), rdata.strings) for rdata in answers]
        if qtype in ("A", "AAAA"):
            return [((name, qtype), rdata.address) for rdata in answers]
        return []

    saved = spf.DNSLookup
    spf.DNSLookup = lookup
    try:
        result, explanation = spf.check2(i=ip, s=sender, h="rail.test")
    finally:
        spf.DNSLookup = saved
    return result, explanation
