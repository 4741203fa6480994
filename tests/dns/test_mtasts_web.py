"""The MTA-STS policy resource served at /.well-known/mta-sts.txt."""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from rail.config.schema import DNS, TLS, Config
from rail.web.mtasts import MTASTSPolicy

_CONFIG = Config(
    hostname="mail.example.com", tls=TLS(self_signed=True), dns=DNS(mta_sts_max_age=86400.0)
)


class PolicyResourceTests(SynchronousTestCase):
    def test_get(self) -> None:
        """GET returns the policy as text/plain with CRLF line ends."""
        request = DummyRequest([])
        body = MTASTSPolicy.from_config(_CONFIG).render_GET(request)
        self.assertEqual(
            body, b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 86400\r\n"
        )
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-type"), [b"text/plain"])

    def test_update(self) -> None:
        """A reloaded configuration changes the policy served."""
        resource = MTASTSPolicy.from_config(_CONFIG)
        resource.update(attrs.evolve(_CONFIG, dns=DNS(mta_sts_mode="testing")))
        self.assertIn(b"mode: testing\r\n", resource.render_GET(DummyRequest([])))

    def test_below_is_404(self) -> None:
        """Paths below the policy file are not found."""
        request = DummyRequest([b"extra"])
        MTASTSPolicy.from_config(_CONFIG).render_GET(request)
        self.assertEqual(request.responseCode, 404)
