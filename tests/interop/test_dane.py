"""DANE (RFC 7672) and TLS-RPT (RFC 8460) with real peers on loopback.

A DNSSEC-signed zone per recipient domain is served by NSD (signed by ``ldns-signzone``)
behind a validating unbound whose only trust anchors are the zones' KSKs; Rail asks
unbound for everything (``delivery.nameservers`` and ``delivery.dane_resolver``). One
Postfix is the MX host of every domain, with a certificate issued by a test root through
an intermediate, naming all the MX hosts:

- ``dest.test`` publishes DANE-EE ``3 1 1`` of the server's key: delivered over TLS;
- ``ta.test`` publishes DANE-TA ``2 0 1`` of the intermediate: delivered (chain and
  name checked);
- ``bad.test`` publishes a DANE-EE record of another key: deferred with a reason naming
  DANE, and Postfix never sees the recipient (no plaintext fallback);
- ``plain.test`` is not signed and publishes the same wrong record: an insecure TLSA
  RRset does not count, so it is delivered with opportunistic TLS;
- ``bogus.test`` is signed, but unbound's trust anchor for it is another key: its
  answers are bogus (SERVFAIL) and the recipient is deferred, nothing sent;
- ``cname.test`` is signed and its MX host is a CNAME of ``mx.dest.test``: the TLSA
  records at the expanded name (the right key) are used before the wrong one at the
  original name (RFC 7672 §2.2.2): delivered;
- ``alias.test`` is signed and publishes the wrong record, but its MX host is a CNAME
  into the unsigned ``plain.test``: its address records are insecure, so DANE does not
  apply (RFC 7672 §2.2.2): delivered with opportunistic TLS.

Then TLS-RPT: Rail (``tlsrpt.enabled``) counted those sessions; after a restart that
moves the counters to yesterday, it sends each domain's report to the ``rua`` of its
``_smtp._tls`` record: by mail through its own queue (delivered, DANE-verified, to
Postfix) and by an HTTPS POST to a receiver in this test. Both copies validate with the
independent RFC 8460 JSON Schema of ``tests/tlsrpt`` and carry the counts of the run.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import gzip
import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from rail.store.schema import database_path
from rail.tlsrpt.report import day_of
from tests.integration.processes import free_port, start_twistd, wait_for_port
from tests.interop.helpers import SENDER, RunningRail, _stop, start_rail
from tests.support.danecerts import issue, pem, tlsa_for
from tests.support.postfix import need_postfix, start_postfix
from tests.support.signeddns import SignedDNS, need_signed_dns, start_signed_dns
from tests.tlsrpt.schema import validate_report

_DOMAINS = (
    "dest.test",
    "ta.test",
    "bad.test",
    "bogus.test",
    "plain.test",
    "cname.test",
    "alias.test",
)


async def _wait_for(check: Any, timeout: float = 60.0, what: str = "") -> Any:
    """Call ``check()`` (blocking, in a thread) every 0.2 s until it returns something true."""
    for _ in range(int(timeout * 5)):
        result = await deferToThread(check)
        if result:
            return result
        await deferLater(reactor, 0.2, lambda: None)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class _Receiver(Resource):
    """An HTTPS rua: keeps every POST's content type and body."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[tuple[str, bytes]] = []

    def render_POST(self, request: Any) -> bytes:
        kind = request.getHeader("content-type") or ""
        self.posts.append((kind, request.content.read()))
        return b"ok"


class _PKI:
    """root -> intermediate -> the MX certificate (every MX name), valid now; and the
    HTTPS receiver's certificate for 127.0.0.1."""

    def __init__(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        valid = {
            "not_before": now - datetime.timedelta(hours=1),
            "not_after": now + datetime.timedelta(days=2),
        }
        self.root = issue("DANE Test Root", ca=True, **valid)
        self.intermediate = issue("DANE Test Intermediate", issuer=self.root, ca=True, **valid)
        self.mx = issue(
            "mx.dest.test",
            issuer=self.intermediate,
            dns_names=[f"mx.{d}" for d in _DOMAINS],
            **valid,
        )
        self.other = issue("mx.bad.test", issuer=self.intermediate, dns_names=["x"], **valid)
        self.receiver = issue("127.0.0.1", issuer=self.root, ip_addresses=["127.0.0.1"], **valid)


def _zones(pki: _PKI, rua_https: str) -> dict[str, list[str]]:
    ee = tlsa_for(pki.mx.certificate, 3, 1, 1)
    ta = tlsa_for(pki.intermediate.certificate, 2, 0, 1)
    wrong = tlsa_for(pki.other.certificate, 3, 1, 1)
    common = ["@ MX 10 mx", "mx A 127.0.0.1"]
    rua = '_smtp._tls TXT "v=TLSRPTv1; rua=mailto:reports@dest.test,{https}"'
    return {
        "dest.test": [*common, f"_25._tcp.mx TLSA {ee}", rua.format(https=rua_https)],
        "ta.test": [*common, f"_25._tcp.mx TLSA {ta}"],
        "bad.test": [*common, f"_25._tcp.mx TLSA {wrong}", rua.format(https=rua_https)],
        "bogus.test": [*common, f"_25._tcp.mx TLSA {ee}"],
        "cname.test": ["@ MX 10 mx", "mx CNAME mx.dest.test.", f"_25._tcp.mx TLSA {wrong}"],
        "alias.test": ["@ MX 10 mx", "mx CNAME mx.plain.test.", f"_25._tcp.mx TLSA {wrong}"],
    }


def _insecure_zones(pki: _PKI) -> dict[str, list[str]]:
    wrong = tlsa_for(pki.other.certificate, 3, 1, 1)
    return {"plain.test": ["@ MX 10 mx", "mx A 127.0.0.1", f"_25._tcp.mx TLSA {wrong}"]}


class DaneInteropTests(TestCase):
    timeout = 300

    async def _receiver(self, pki: _PKI) -> tuple[_Receiver, int]:
        receiver = _Receiver()
        options = CertificateOptions(
            privateKey=pki.receiver.key, certificate=pki.receiver.certificate
        )
        port = await SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1").listen(
            Site(receiver)
        )
        self.addCleanup(port.stopListening)
        return receiver, port.getHost().port

    async def _dns(self, pki: _PKI, rua_https: str) -> SignedDNS:
        dns = await deferToThread(
            start_signed_dns, _zones(pki, rua_https), _insecure_zones(pki), ["bogus.test"]
        )
        self.addCleanup(dns.stop)
        return dns

    def _submit(self, rail: RunningRail) -> str:
        message = (
            f"From: <{SENDER}>\r\nTo: <bob@dest.test>\r\nSubject: DANE\r\n\r\nhello\r\n"
        ).encode()
        with rail.smtp() as client:
            client.ehlo("app.rail.test")
            code, text = client.docmd(f"MAIL FROM:<{SENDER}>")
            assert code == 250, text
            for address in (
                "bob@dest.test",
                "carol@ta.test",
                "dave@bad.test",
                "erin@bogus.test",
                "frank@plain.test",
                "gina@cname.test",
                "hank@alias.test",
            ):
                code, text = client.rcpt(address)
                assert code == 250, text
            code, text = client.data(message)
        assert code == 250, text
        return text.decode().rsplit(" ", 1)[-1]

    async def test_dane_delivers_matching_defers_wrong_and_reports(self) -> None:
        """See the module docstring: DANE-EE and DANE-TA deliver over verified TLS, a
        wrong TLSA record defers without plaintext; the next day's TLS-RPT reports go
        by mail and HTTPS and hold the run's counts."""
        need_signed_dns()
        need_postfix()
        pki = _PKI()
        receiver, https_port = await self._receiver(pki)
        rua_https = f"https://127.0.0.1:{https_port}/tlsrpt"
        dns = await self._dns(pki, rua_https)
        smtp_port = free_port()
        certificates = Path(self.mktemp()).absolute()
        certificates.mkdir()
        postfix = start_postfix(smtp_port, _DOMAINS, certificate=pki.mx.write(certificates, "mx"))
        self.addCleanup(postfix.stop)
        await _wait_for(lambda: _accepts(smtp_port), 20, "Postfix")
        (certificates / "root.pem").write_bytes(pem(pki.root.certificate))

        def configure(document: dict[str, Any]) -> None:
            document["delivery"].update(
                hold=False,
                nameservers=[f"127.0.0.1:{dns.port}"],
                port=smtp_port,
                dane=True,
                dane_resolver=f"127.0.0.1:{dns.port}",
                mta_sts={"ca_file": str(certificates / "root.pem")},
            )
            document["tlsrpt"] = {
                "enabled": True,
                "organization": "Rail interop",
                "allow_private": True,  # the https rua is on loopback
            }

        rail = await start_rail(self, configure)
        message_id = await deferToThread(self._submit, rail)

        def delivered() -> list[bytes] | None:
            found = postfix.delivered()
            return found if len(found) >= 5 else None

        try:
            messages = await _wait_for(delivered, 60, "five deliveries")
            bad = await _wait_for(
                lambda: _deferred(rail, message_id, "dave@bad.test"), 60, "bad.test deferred"
            )
            bogus = await _wait_for(
                lambda: _deferred(rail, message_id, "erin@bogus.test"), 60, "bogus deferred"
            )
        except AssertionError:
            raise AssertionError(
                f"Rail:\n{rail.server.output.decode()}\nPostfix:\n{_log(postfix)}\n{dns.logs()}"
            ) from None
        recipients = sorted(_header(m, "Delivered-To") for m in messages[:5])
        self.assertEqual(
            recipients,
            [
                "bob@dest.test",
                "carol@ta.test",
                "frank@plain.test",
                "gina@cname.test",
                "hank@alias.test",
            ],
        )
        for delivered_message in messages:
            self.assertRegex(delivered_message.decode(), r"\(using TLSv1\.[23] with cipher")
        self.assertIn("DANE", bad)
        self.assertIn("no TLSA record matches", bad)
        self.assertNotIn("dave@bad.test", _log(postfix))
        # Bogus DNSSEC: unbound answers SERVFAIL, the domain waits; nothing is sent.
        self.assertRegex(bogus, r"^451 4\.4\.3 .*bogus\.test.*SERVFAIL")
        self.assertNotIn("erin@bogus.test", _log(postfix))

        # TLS-RPT: stop (the counters are written), move them to yesterday, start again.
        await _stop(rail.server)
        counted = _move_to_yesterday(rail)
        bad_failures = sum(r[7] for r in counted if r[1] == "bad.test" and r[4] != "success")
        dest_successes = sum(r[7] for r in counted if r[1] == "dest.test" and r[4] == "success")
        self.assertGreaterEqual(bad_failures, 1, counted)
        self.assertGreaterEqual(dest_successes, 1, counted)
        server = start_twistd(["rail", "--config", str(rail.directory / "rail.yaml")])
        self.addCleanup(_stop, server)
        await wait_for_port(rail.smtps_port, server)

        def reports() -> list[bytes] | None:
            found = [m for m in postfix.delivered() if b"TLS-Report-Domain" in m]
            return found if len(found) >= 2 else None

        try:
            mailed = await _wait_for(reports, 60, "two report messages")
            await _wait_for(lambda: len(receiver.posts) >= 2, 60, "two report POSTs")
        except AssertionError:
            raise AssertionError(
                f"Rail:\n{server.output.decode()}\nPostfix:\n{_log(postfix)}"
            ) from None
        by_domain = {}
        for raw in mailed:
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            self.assertEqual(parsed["TLS-Report-Submitter"], "rail.test")
            self.assertEqual(parsed.get_param("report-type"), "tlsrpt")
            (attachment,) = list(parsed.iter_attachments())  # type: ignore[attr-defined]
            self.assertEqual(attachment.get_content_type(), "application/tlsrpt+gzip")
            body = attachment.get_content()
            by_domain[parsed["TLS-Report-Domain"]] = validate_report(body)
            self.assertIn("DKIM-Signature:", raw.decode())
        self.assertEqual(sorted(by_domain), ["bad.test", "dest.test"])
        posted = {}
        for kind, body in receiver.posts:
            self.assertEqual(kind, "application/tlsrpt+gzip")
            report = validate_report(body)
            posted[report["policies"][0]["policy"]["policy-domain"]] = report
        self.assertEqual(posted["bad.test"], by_domain["bad.test"])

        (policy,) = by_domain["bad.test"]["policies"]
        self.assertEqual(policy["policy"]["policy-type"], "tlsa")
        self.assertEqual(policy["summary"]["total-failure-session-count"], bad_failures)
        (detail,) = policy["failure-details"]
        self.assertEqual(
            (detail["result-type"], detail["receiving-mx-hostname"], detail["receiving-ip"]),
            ("tlsa-invalid", "mx.bad.test", "127.0.0.1"),
        )
        (policy,) = by_domain["dest.test"]["policies"]
        self.assertEqual(policy["summary"]["total-successful-session-count"], dest_successes)
        self.assertEqual(by_domain["dest.test"]["organization-name"], "Rail interop")
        self.assertEqual(
            json.loads(gzip.decompress(receiver.posts[0][1]))["contact-info"],
            "mailto:postmaster@rail.test",
        )


def _deferred(rail: RunningRail, message_id: str, address: str) -> str | None:
    """The last reply to ``address`` once deferred (read from the queue database)."""
    connection = sqlite3.connect(f"file:{database_path(rail.queue)}?mode=ro", uri=True)
    try:
        row = connection.execute(
            "SELECT status, last_reply FROM recipients WHERE message_id = ? AND address = ?",
            (message_id, address),
        ).fetchone()
    finally:
        connection.close()
    if row is None or row[0] != "deferred":
        return None
    return str(row[1])


def _move_to_yesterday(rail: RunningRail) -> list[tuple[Any, ...]]:
    """Make today's TLS-RPT counters yesterday's (as if the day had ended); the rows."""
    today = day_of(datetime.datetime.now(datetime.UTC).timestamp())
    yesterday = day_of(datetime.datetime.now(datetime.UTC).timestamp() - 86400)
    connection = sqlite3.connect(database_path(rail.queue))
    try:
        with connection:
            connection.execute("UPDATE tls_outcomes SET day = ? WHERE day = ?", (yesterday, today))
        return [tuple(row) for row in connection.execute("SELECT * FROM tls_outcomes")]
    finally:
        connection.close()


def _header(message: bytes, name: str) -> str:
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    return str(parsed[name])


def _log(postfix: Any) -> str:
    return postfix.log.read_text() if postfix.log.exists() else "(no Postfix log)"
