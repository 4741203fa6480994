"""Rail's signatures checked by an independent verifier: Perl's Mail::DKIM.

dkimpy, used by the other tests, shares no code with Rail's signer but is one library;
Mail::DKIM is what SpamAssassin and amavis use. Its DNS look-up is replaced by the records
Rail publishes. Mail::DKIM checks ed25519 from version 1.20230630 on (Debian 12 ships
1.20230212); the tests use the newer one the test command installs (see
:mod:`tests.support.perl`) and both signatures must pass. Without Perl, a Mail::DKIM that
checks ed25519, or Net::DNS, the tests skip, and fail under ``CI=true``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.dkim.sign import from_domain, sign
from tests.dkim.helpers import KEYS, MESSAGE, NOW, records_of
from tests.support.perl import perl_env, require_mail_dkim

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
_BOTH_PASS = ["rsa-sha256 pass", "ed25519-sha256 pass"]


class MailDKIMTests(SynchronousTestCase):
    def setUp(self) -> None:
        require_mail_dkim()
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
            env=perl_env(),
            timeout=60,
        )
        return done.stdout.splitlines()

    def test_pass(self) -> None:
        """A signed message passes Mail::DKIM, both the rsa-sha256 and the ed25519-sha256
        signature."""
        signed = sign(MESSAGE, KEYS, NOW) + MESSAGE
        self.assertEqual(self.verify(signed, "example.com"), _BOTH_PASS)

    def test_tampered(self) -> None:
        """A changed body fails both signatures in Mail::DKIM."""
        signed = sign(MESSAGE, KEYS, NOW) + MESSAGE
        results = self.verify(signed.replace(b"warehouse", b"W"), "example.com")
        self.assertEqual(results, ["rsa-sha256 fail", "ed25519-sha256 fail"])

    def test_broken_ed25519_signature(self) -> None:
        """A corrupted ed25519 signature fails while the RSA one still passes: the
        verifier really checks ed25519 rather than reporting it unsupported."""
        signed = sign(MESSAGE, KEYS, NOW)
        header, _, rest = signed.partition(b"a=ed25519-sha256")
        assert rest, signed
        position = rest.index(b" b=") + 3
        flipped = b"A" if rest[position : position + 1] != b"A" else b"B"
        broken = header + b"a=ed25519-sha256" + rest[:position] + flipped + rest[position + 1 :]
        results = self.verify(broken + MESSAGE, "example.com")
        self.assertEqual(results, ["rsa-sha256 pass", "ed25519-sha256 fail"])

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
        self.assertEqual(self.verify(signed, "example.com"), _BOTH_PASS)
