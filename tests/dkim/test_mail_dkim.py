"""Rail's signatures checked by an independent verifier: Perl's Mail::DKIM.

dkimpy, used by the other tests, shares no code with Rail's signer but is one library;
Mail::DKIM is what SpamAssassin and amavis use. Its DNS look-up is replaced by the records
Rail publishes. Mail::DKIM checks ed25519 from version 1.20230630 on; with an older one
(Debian 12 ships 1.20230212) only the RSA signature is expected to pass. Skipped where
Perl, Mail::DKIM or Net::DNS are not installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from rail.dkim.sign import from_domain, sign
from tests.dkim.helpers import KEYS, MESSAGE, NOW, records_of

_VERIFY = r"""
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Net::DNS;
my $file = shift @ARGV;
my %txt = map { my ($name, $value) = split /=/, $_, 2; (lc $name, $value) } @ARGV;
no warnings 'redefine';
*Mail::DKIM::DNS::query = sub {
    my ($name, $type) = @_;
    my $value = $txt{lc $name};
    return () unless defined $value;
    return Net::DNS::RR->new(
        name => $name, type => 'TXT', txtdata => [unpack('(A255)*', $value)]);
};
open(my $fh, '<:raw', $file) or die "$file: $!";
local $/ = undef;
my $verifier = Mail::DKIM::Verifier->new();
$verifier->PRINT(<$fh>);
$verifier->CLOSE;
foreach my $signature ($verifier->signatures) {
    printf "%s %s\n", $signature->algorithm, $signature->result;
}
"""
_ED25519_SINCE = 1.20230630


def _mail_dkim_version() -> float:
    if shutil.which("perl") is None:
        raise SkipTest("perl is not installed")
    probe = subprocess.run(
        ["perl", "-MMail::DKIM", "-MNet::DNS", "-e", "print $Mail::DKIM::VERSION"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        raise SkipTest("Perl's Mail::DKIM or Net::DNS is not installed")
    return float(probe.stdout)


class MailDKIMTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.version = _mail_dkim_version()
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.script = self.directory / "verify.pl"
        self.script.write_text(_VERIFY)

    def verify(self, message: bytes, domain: str) -> list[str]:
        """``algorithm result`` for each signature, as Mail::DKIM reports them."""
        path = self.directory / "message.eml"
        path.write_bytes(message)
        records = [f"{r.selector}._domainkey.{domain}={r.txt}" for r in records_of(KEYS)]
        done = subprocess.run(
            ["perl", str(self.script), str(path), *records],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.splitlines()

    def expected(self) -> list[str]:
        ed25519 = "pass" if self.version >= _ED25519_SINCE else "invalid"
        return ["rsa-sha256 pass", f"ed25519-sha256 {ed25519}"]

    def test_pass(self) -> None:
        """A signed message passes Mail::DKIM (ed25519 where the version supports it)."""
        signed = sign(MESSAGE, KEYS, NOW) + MESSAGE
        self.assertEqual(self.verify(signed, "example.com"), self.expected())

    def test_tampered(self) -> None:
        """A changed body fails Mail::DKIM."""
        signed = sign(MESSAGE, KEYS, NOW) + MESSAGE
        results = self.verify(signed.replace(b"warehouse", b"W"), "example.com")
        self.assertEqual(results[0], "rsa-sha256 fail")

    def test_smtputf8(self) -> None:
        """8-bit UTF-8 headers, whitespace-heavy body lines and no final CRLF pass."""
        message = (
            "From: Bücher <versand@example.com>\r\n"
            "To: jürgen@例え.jp\r\n"
            "Subject:  Grüße \t aus Köln \r\n"
            "\r\n"
            "Zeile  mit \t Leerraum \r\n"
            "\r\n"
            "letzte Zeile"
        ).encode()
        self.assertEqual(from_domain(message), "example.com")
        signed = sign(message, KEYS, NOW) + message + b"\r\n"  # SMTP ends the last line
        self.assertEqual(self.verify(signed, "example.com"), self.expected())
