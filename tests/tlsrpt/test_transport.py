"""Tests for :func:`rail.tlsrpt.transport.https_poster`: a recipient domain's ``https:``
report address is held to the webhooks' SSRF rule (resolved once, every address checked,
the connection pinned to the checked address), on a MemoryReactor."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from rail.tlsrpt.transport import ReportRefusedError, https_poster


class _Resolver:
    """Answers every host with ``addresses`` and counts the questions."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.asked: list[str] = []

    def __call__(self, host: str) -> Deferred[list[str]]:
        self.asked.append(host)
        return succeed(list(self.addresses))


class PosterTests(SynchronousTestCase):
    def _post(
        self, url: str, addresses: list[str], *, allow_private: bool
    ) -> tuple[MemoryReactorClock, _Resolver, Deferred[int]]:
        reactor = MemoryReactorClock()
        resolver = _Resolver(addresses)
        post = https_poster(reactor, None, allow_private=allow_private, resolve=resolver)
        return reactor, resolver, post(url, b"report")

    def test_internal_addresses_refused(self) -> None:
        """A report host resolving to loopback, RFC 1918, link-local (cloud metadata) or
        IPv4-mapped loopback, or with one such address among public ones, is not
        connected to: the POST fails naming the address and tlsrpt.allow_private."""
        cases = [
            ["127.0.0.1"],
            ["10.1.2.3"],
            ["169.254.169.254"],
            ["::ffff:127.0.0.1"],
            ["93.184.216.34", "192.168.0.7"],
        ]
        for addresses in cases:
            reactor, resolver, posting = self._post(
                "https://reports.dest.example/tlsrpt", addresses, allow_private=False
            )
            failure = self.failureResultOf(posting, ReportRefusedError)
            self.assertIn("address not allowed", str(failure.value), addresses)
            self.assertIn("tlsrpt.allow_private is false", str(failure.value))
            self.assertEqual(reactor.tcpClients, [], addresses)
            self.assertEqual(resolver.asked, ["reports.dest.example"])

    def test_internal_literal_refused_without_resolving(self) -> None:
        """An IP-literal report address on loopback is refused without a look-up."""
        reactor, resolver, posting = self._post(
            "https://127.0.0.1:8443/tlsrpt", ["93.184.216.34"], allow_private=False
        )
        self.failureResultOf(posting, ReportRefusedError)
        self.assertEqual((reactor.tcpClients, resolver.asked), ([], []))

    def test_plain_http_refused(self) -> None:
        """http: report addresses are refused even with allow_private (reports go over
        TLS only)."""
        reactor, _resolver, posting = self._post(
            "http://127.0.0.1:8080/tlsrpt", ["127.0.0.1"], allow_private=True
        )
        self.failureResultOf(posting, ReportRefusedError)
        self.assertEqual(reactor.tcpClients, [])

    def test_connects_to_the_checked_address(self) -> None:
        """A public host is resolved once and the connection goes to that very address
        (no second resolution: DNS rebinding cannot redirect it); with allow_private a
        loopback receiver (tests) is connected to as well."""
        reactor, resolver, posting = self._post(
            "https://reports.dest.example/tlsrpt", ["93.184.216.34"], allow_private=False
        )
        self.assertNoResult(posting)
        self.assertEqual(resolver.asked, ["reports.dest.example"])
        self.assertEqual([c[:2] for c in reactor.tcpClients], [("93.184.216.34", 443)])
        posting.cancel()
        self.failureResultOf(posting)

        reactor, _resolver, posting = self._post(
            "https://localhost:8443/tlsrpt", ["127.0.0.1"], allow_private=True
        )
        self.assertEqual([c[:2] for c in reactor.tcpClients], [("127.0.0.1", 8443)])
        posting.cancel()
        self.failureResultOf(posting)
