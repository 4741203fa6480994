"""Local domains: configured ones plus those of valid client certificates."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import attrs
from twisted.trial.unittest import SynchronousTestCase

from rail.config import parse_config
from rail.dkim.domains import local_domains
from rail.pki.registry import CertificateRecord
from tests.pki.helpers import NOW, issue_client, make_ca

_CA = make_ca()


def _record(name: str, *emails: str, days: int = 90) -> CertificateRecord:
    certificate, _ = issue_client(_CA, name, emails, validity=timedelta(days=days))
    return CertificateRecord.from_certificate(certificate, NOW)


class LocalDomainsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.config = parse_config(
            {
                "hostname": "rail.test",
                "tls": {"self_signed": True},
                "local_domains": ["rail.test", "example.org"],
            },
            Path(self.mktemp()),
        )

    def test_config_only(self) -> None:
        """Without certificates, the configured domains, sorted."""
        self.assertEqual(local_domains(self.config, [], NOW), ["example.org", "rail.test"])

    def test_certificate_senders(self) -> None:
        """Sender domains of valid certificates are added, lower-case, once each."""
        records = [
            _record("a", "noreply@Ataca.IO", "alerts@smtp.ataca.io"),
            _record("b", "x@example.org", "y@ataca.io"),
        ]
        self.assertEqual(
            local_domains(self.config, records, NOW),
            ["ataca.io", "example.org", "rail.test", "smtp.ataca.io"],
        )

    def test_invalid_certificates_ignored(self) -> None:
        """Revoked and expired certificates contribute no domain."""
        revoked = attrs.evolve(_record("r", "a@revoked.example"), revoked_at=NOW)
        expired = _record("e", "a@expired.example", days=1)
        later = NOW + timedelta(days=2)
        self.assertEqual(
            local_domains(self.config, [revoked, expired], later), ["example.org", "rail.test"]
        )
