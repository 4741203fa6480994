"""Rail delivers to a real Postfix acting as the recipient MX on loopback.

The whole path runs for real: an app submits over SMTPS with its client certificate; Rail
looks the MX up in a DNS server on loopback, connects to Postfix, upgrades with STARTTLS,
and Postfix stores the message in a Maildir. The stored copy must end with exactly the
bytes Rail queued, both DKIM signatures must verify with dkimpy and with Perl's
Mail::DKIM (a version that checks ed25519, see :mod:`tests.support.perl`), each fetching
Rail's keys from that DNS server, and Rail's status API must report the message sent.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import dkim
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.names import dns
from twisted.trial.unittest import TestCase

from rail.dkim.keys import KeyStore
from tests.integration.processes import free_port
from tests.interop.helpers import SENDER, RunningRail, start_rail
from tests.support.dnsserver import RunningDNS, start_dns, txt_record
from tests.support.perl import perl_env, require_mail_dkim
from tests.support.postfix import start_postfix

_PERL_VERIFY = r"""
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Mail::DKIM::DNS;
use Net::DNS::Resolver;
my ($file, $port) = @ARGV;
Mail::DKIM::DNS::resolver(
    Net::DNS::Resolver->new(nameservers => ['127.0.0.1'], port => $port, recurse => 0));
open(my $fh, '<:raw', $file) or die "$file: $!";
local $/ = undef;
my $verifier = Mail::DKIM::Verifier->new();
my $text = <$fh>;
$text =~ s/\r?\n/\r\n/g;
$verifier->PRINT($text);
$verifier->CLOSE;
printf "version %s\n", $Mail::DKIM::VERSION;
foreach my $signature ($verifier->signatures) {
    printf "%s %s %s\n", $signature->algorithm, $signature->result, $signature->domain;
}
"""

_BODY = (
    "Dear Bob,\r\n"
    ".a line that starts with a dot\r\n"
    "..and one with two\r\n"
    ".\r\n"
    "the line above is a lone dot; trailing spaces here:   \r\n"
    "\r\n"
    "-- \r\nRail\r\n"
)


async def _wait_for(check: Any, timeout: float = 30.0) -> Any:
    """Poll ``check()`` every 0.1 s until it returns something true."""
    for _ in range(int(timeout * 10)):
        result = check()
        if result:
            return result
        await deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"timed out after {timeout}s waiting for {check}")


def _message_status(rail: RunningRail, message_id: str) -> dict[str, Any]:
    """``GET /api/v1/messages/ID`` with the app's certificate (blocking)."""
    request = urllib.request.Request(rail.url(f"/api/v1/messages/{message_id}"))
    with urllib.request.urlopen(request, context=rail.smtp_context(), timeout=10) as response:
        document: dict[str, Any] = json.load(response)
    return document


async def _poll_in_thread(check: Any, timeout: float = 30.0) -> Any:
    """Like :func:`_wait_for`, for a blocking ``check`` run in a thread."""
    for _ in range(int(timeout * 10)):
        result = await deferToThread(check)
        if result:
            return result
        await deferLater(reactor, 0.1, lambda: None)
    raise AssertionError(f"timed out after {timeout}s waiting for {check}")


def _accepts(port: int, address: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((address, port)) == 0


class PostfixDeliveryTests(TestCase):
    timeout = 120

    async def _start(self) -> tuple[RunningRail, RunningDNS, Any]:
        require_mail_dkim()
        dns_server = await start_dns(
            reactor,
            {
                "dest.test": [dns.Record_MX(10, b"mx.dest.test", ttl=60)],
                "mx.dest.test": [dns.Record_A("127.0.0.1", ttl=60)],
            },
        )
        self.addCleanup(dns_server.stop)
        port = free_port()
        postfix = start_postfix(port, ("dest.test",))
        self.addCleanup(postfix.stop)
        await _wait_for(lambda: _accepts(port), timeout=20)

        def configure(document: dict[str, Any]) -> None:
            document["delivery"].update(
                hold=False, nameservers=[f"127.0.0.1:{dns_server.port}"], port=port
            )

        rail = await start_rail(self, configure)
        keys = KeyStore.open(rail.directory / "data" / "dkim")
        for key in keys.published("rail.test", None):
            dns_server.set_records(f"{key.selector}._domainkey.rail.test", [txt_record(key.txt)])
        return rail, dns_server, postfix

    def _submit(self, rail: RunningRail, message: bytes) -> str:
        with rail.smtp() as client:
            client.ehlo("app.rail.test")
            code, text = client.docmd("MAIL FROM:<" + SENDER + ">")
            assert code == 250, text
            client.rcpt("bob@dest.test")
            code, text = client.data(message)
        assert code == 250, text
        match = re.search(rb"queued as (\w+)", text)
        assert match is not None, text
        return match[1].decode()

    async def test_delivered_byte_identical_with_tls_and_dkim(self) -> None:
        """The message reaches Postfix over STARTTLS; Postfix's copy ends with exactly the
        queued bytes; the rsa-sha256 and ed25519-sha256 signatures verify with dkimpy and
        Mail::DKIM through real DNS; the status API says sent."""
        rail, dns_server, postfix = await self._start()
        message = (
            f"From: App <{SENDER}>\r\nTo: Bob <bob@dest.test>\r\nSubject: Interop\r\n\r\n{_BODY}"
        ).encode()
        message_id = await deferToThread(self._submit, rail, message)
        try:
            (delivered,) = await _wait_for(postfix.delivered)
        except AssertionError:
            log = postfix.log.read_text() if postfix.log.exists() else "(no Postfix log)"
            raise AssertionError(f"Rail:\n{rail.server.output.decode()}\nPostfix:\n{log}") from None
        stored = rail.message(message_id)
        assert stored is not None
        self.assertTrue(delivered.endswith(stored.data.replace(b"\r\n", b"\n")))
        self.assertRegex(delivered.decode(), r"\(using TLSv1\.[23] with cipher")

        crlf = delivered.replace(b"\n", b"\r\n")
        signatures = re.findall(rb"(?m)^DKIM-Signature:", crlf)
        self.assertEqual(len(signatures), 2)

        def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
            text = name.decode().rstrip(".")
            for key in KeyStore.open(rail.directory / "data" / "dkim").published("rail.test", None):
                if text == f"{key.selector}._domainkey.rail.test":
                    return key.txt.encode()
            return b""

        verifier = dkim.DKIM(crlf)
        self.assertEqual([verifier.verify(idx=i, dnsfunc=dnsfunc) for i in (0, 1)], [True, True])

        results = await deferToThread(self._perl_verify, crlf, dns_server.port)
        self.assertEqual(
            sorted(line for line in results if not line.startswith("version")),
            ["ed25519-sha256 pass rail.test", "rsa-sha256 pass rail.test"],
            results,
        )

        # Postfix stores the message before Rail records its 250, so ask until it has.
        def sent() -> dict[str, Any] | None:
            status = _message_status(rail, message_id)
            return status if status["status"] == "sent" else None

        status = await _poll_in_thread(sent)
        self.assertEqual(status["id"], message_id)
        [recipient] = status["recipients"]
        self.assertEqual(
            (recipient["address"], recipient["status"], recipient["attempts"]),
            ("bob@dest.test", "sent", 1),
        )
        self.assertRegex(recipient["last_reply"], r"^250 ")

    def _perl_verify(self, message: bytes, port: int) -> list[str]:
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "verify.pl").write_text(_PERL_VERIFY)
        (directory / "message.eml").write_bytes(message)
        done = subprocess.run(
            ["perl", str(directory / "verify.pl"), str(directory / "message.eml"), str(port)],
            capture_output=True,
            text=True,
            check=True,
            env=perl_env(),
            timeout=60,
        )
        return done.stdout.splitlines()
