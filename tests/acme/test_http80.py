"""The port-80 site: HTTP-01 answers and the redirect to HTTPS, over a fake transport."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from rail.acme.challenges import PendingChallenges
from rail.web.http80 import http80_site, redirect_target

_TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
_KEY_AUTHORIZATION = _TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"


class Port80Tests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.challenges = PendingChallenges()
        self.site = http80_site("mail.rail.test", self.challenges, clock=self.clock)

    def request(self, raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        """Send one raw request through the site; return status, headers and body."""
        protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4321))
        assert protocol is not None
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(raw)
        protocol.connectionLost(None)  # type: ignore[arg-type]
        self.assertEqual(self.clock.getDelayedCalls(), [])
        head, _, body = transport.value().partition(b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers, body

    def get(self, target: bytes, method: bytes = b"GET") -> tuple[int, dict[bytes, bytes], bytes]:
        return self.request(
            method + b" " + target + b" HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        )

    def test_pending_challenge_answered(self) -> None:
        """GET of a pending token answers its key authorization as text/plain, uncached."""
        self.challenges.add(_TOKEN, _KEY_AUTHORIZATION)
        code, headers, body = self.get(b"/.well-known/acme-challenge/" + _TOKEN.encode())
        self.assertEqual(code, 200)
        self.assertEqual(body, _KEY_AUTHORIZATION.encode())
        self.assertEqual(headers[b"content-type"], b"text/plain; charset=utf-8")
        self.assertEqual(headers[b"cache-control"], b"no-store")

    def test_head_of_pending_challenge(self) -> None:
        """HEAD of a pending token is 200 without a body."""
        self.challenges.add(_TOKEN, _KEY_AUTHORIZATION)
        code, _, body = self.get(b"/.well-known/acme-challenge/" + _TOKEN.encode(), b"HEAD")
        self.assertEqual((code, body), (200, b""))

    def test_unknown_token_404(self) -> None:
        """Unknown, removed, malformed or empty tokens answer 404, not a redirect."""
        self.challenges.add(_TOKEN, _KEY_AUTHORIZATION)
        self.challenges.remove(_TOKEN)
        for token in [_TOKEN.encode(), b"other", b"", b"a.b", b"%2e%2e", b"a/b"]:
            code, _, _ = self.get(b"/.well-known/acme-challenge/" + token)
            self.assertEqual(code, 404, token)

    def test_query_does_not_change_token(self) -> None:
        """A query string after the token is ignored, as the CA's request has none."""
        self.challenges.add(_TOKEN, _KEY_AUTHORIZATION)
        code, _, body = self.get(b"/.well-known/acme-challenge/" + _TOKEN.encode() + b"?x=1")
        self.assertEqual((code, body), (200, _KEY_AUTHORIZATION.encode()))

    def test_everything_else_redirects(self) -> None:
        """Other paths and methods answer 301 to the configured host, path and query;
        the request's Host header is ignored."""
        cases = [
            (b"GET", b"/", b"https://mail.rail.test/"),
            (b"GET", b"/api/who?x=1&y=2", b"https://mail.rail.test/api/who?x=1&y=2"),
            (b"POST", b"/v1/send", b"https://mail.rail.test/v1/send"),
            (b"DELETE", b"/a%20b", b"https://mail.rail.test/a%20b"),
            (
                b"POST",
                b"/.well-known/acme-challenge/x",
                b"https://mail.rail.test/.well-known/acme-challenge/x",
            ),
            (b"GET", b"/.well-known/other", b"https://mail.rail.test/.well-known/other"),
        ]
        for method, target, location in cases:
            code, headers, _ = self.get(target, method)
            self.assertEqual((code, headers.get(b"location")), (301, location), target)

    def test_absolute_form_keeps_only_path(self) -> None:
        """An absolute-form request target cannot redirect to another host."""
        code, headers, _ = self.get(b"http://evil.example/x?q=1")
        self.assertEqual((code, headers[b"location"]), (301, b"https://mail.rail.test/x?q=1"))


class RedirectTargetTests(SynchronousTestCase):
    def test_table(self) -> None:
        """Targets become https URLs on our host with header-safe bytes."""
        cases = [
            (b"/", b"https://h.test/"),
            (b"/p?q", b"https://h.test/p?q"),
            (b"//evil.example/x", b"https://h.test/evil.example/x"),
            (b"/\xc3\xa9", b"https://h.test/%C3%A9"),
            (b"/a\tb", b"https://h.test/a%09b"),
            (b"*", b"https://h.test/"),
            (b"http://evil.example", b"https://h.test/"),
            (b"https://evil.example/y?z=1", b"https://h.test/y?z=1"),
        ]
        for uri, expected in cases:
            self.assertEqual(redirect_target("h.test", uri), expected, uri)
