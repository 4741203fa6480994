"""prepare_pki in tls.acme mode: the saved ACME certificate, else one from Rail's CA."""

from __future__ import annotations

from pathlib import Path

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rail.acme.storage import save_acme_material
from rail.pki.inspect import issued_by
from rail.startup import prepare_pki
from tests.acme.helpers import NOW, at, material
from tests.integration.fixtures import make_config


class AcmeStartupTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data = Path(self.mktemp()).absolute()
        self.config = make_config(
            self.data, tls={"acme": {"directory": "https://127.0.0.1:14000/dir"}}
        )

    def test_own_ca_until_acme_succeeds(self) -> None:
        """Without an ACME certificate Rail serves one from its own CA for its hostname."""
        pki = prepare_pki(self.config, at(NOW))
        self.assertEqual(len(pki.server.chain), 1)
        self.assertTrue(issued_by(pki.server.chain[0], pki.ca.certificate))

    def test_saved_acme_certificate_served(self) -> None:
        """A saved, unexpired ACME certificate is what the listeners start with."""
        saved = material(("rail.test",))
        save_acme_material(self.data, saved)
        pki = prepare_pki(self.config, at(NOW))
        self.assertEqual(pki.server.chain, saved.chain)

    def test_expired_acme_certificate_falls_back(self) -> None:
        """An expired ACME certificate is not served: Rail's CA stands in, with a warning."""
        save_acme_material(self.data, material(("rail.test",), not_after=NOW - 1))
        with capturedLogs() as events:
            pki = prepare_pki(self.config, at(NOW))
        self.assertTrue(issued_by(pki.server.chain[0], pki.ca.certificate))
        self.assertTrue(any("expired at" in str(e.get("problem")) for e in events))
