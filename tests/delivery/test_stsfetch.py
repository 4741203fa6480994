"""The MTA-STS TXT lookup and policy fetch against a DNS server and an HTTPS server on
loopback: what is accepted, and each refusal with its RFC 8460 result type."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import reactor
from twisted.names import dns
from twisted.trial.unittest import TestCase

from rail.delivery.resolve import make_resolver
from rail.delivery.stsfetch import PolicyFetcher, policy_url
from rail.delivery.stspolicy import MAX_POLICY_SIZE
from rail.delivery.tlsverify import TLSContexts
from tests.interop.outbound import PolicyServer, TestCA
from tests.support.dnsserver import start_dns, txt_record

POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mx.dest.example\r\nmax_age: 86400\r\n"


class FetchTests(TestCase):
    timeout = 30

    async def setUp(self) -> None:  # type: ignore[override]
        self.ca = TestCA.create(Path(self.mktemp()).resolve())
        self.server = PolicyServer(self, self.ca, "dest.example")
        self.dns = await start_dns(
            reactor,
            {
                "_mta-sts.dest.example": [txt_record("v=STSv1; id=abc123;")],
                "_mta-sts.two.example": [
                    txt_record("v=STSv1; id=a"),
                    txt_record("v=STSv1; id=b"),
                ],
                "_mta-sts.bad.example": [txt_record("v=STSv1; id=no-dashes")],
                "mta-sts.dest.example": [dns.Record_A("127.0.0.1", ttl=60)],
                "mta-sts.private.example": [dns.Record_A("10.20.30.40", ttl=60)],
                "mta-sts.mixed.example": [
                    dns.Record_A("93.184.216.34", ttl=60),
                    dns.Record_A("169.254.169.254", ttl=60),
                ],
            },
        )
        self.addCleanup(self.dns.stop)
        resolver = make_resolver([("127.0.0.1", self.dns.port)], reactor)
        self.addCleanup(lambda: [c.transport.loseConnection() for c in resolver.connections])  # type: ignore[attr-defined]
        self.resolver = resolver

    def fetcher(self, ca: TestCA | None = None, *, allow_private: bool = True) -> PolicyFetcher:
        """The fetcher under test; the policy server is on loopback, so allowed."""
        contexts = TLSContexts(str((ca or self.ca).ca_file), system_roots=False)
        return PolicyFetcher(
            reactor,
            self.resolver,
            contexts,
            port=self.server.number,
            allow_private=allow_private,
        )

    async def test_txt_id(self) -> None:
        """The id of the one v=STSv1 record; None for none, two, or a malformed one."""
        fetcher = self.fetcher()
        self.assertEqual(await fetcher.policy_id("dest.example"), "abc123")
        for domain in ("none.example", "two.example", "bad.example"):
            self.assertIsNone(await fetcher.policy_id(domain), domain)

    async def test_policy_fetched(self) -> None:
        """A 200 text/plain policy from a verified mta-sts host is parsed."""
        self.server.serve(POLICY)
        fetched = await self.fetcher().fetch("dest.example")
        assert fetched.policy is not None, fetched
        self.assertEqual(
            (fetched.policy.mode, fetched.policy.mx), ("enforce", ("mx.dest.example",))
        )
        self.assertEqual(self.server.requests, ["/.well-known/mta-sts.txt"])

    async def test_refusals(self) -> None:
        """A redirect (not followed), another status, another media type, an
        oversized body and an invalid policy are each refused, with their result type."""
        cases = [
            (
                {"code": 301, "location": b"https://elsewhere.example/p"},
                "sts-policy-fetch-error",
                "HTTP 301",
            ),
            ({"code": 404}, "sts-policy-fetch-error", "HTTP 404"),
            ({"content_type": b"text/html"}, "sts-policy-fetch-error", "not text/plain"),
            ({"text": "x" * (MAX_POLICY_SIZE + 1)}, "sts-policy-fetch-error", "larger than"),
            ({"text": "version: STSv1\r\nmode: strict\r\n"}, "sts-policy-invalid", "mode"),
        ]
        for change, result, reason in cases:
            text = str(change.pop("text", POLICY))
            self.server.serve(text, **change)  # type: ignore[arg-type]
            fetched = await self.fetcher().fetch("dest.example")
            self.assertIsNone(fetched.policy)
            self.assertEqual(fetched.result, result, fetched)
            self.assertIn(reason, fetched.reason or "")
        self.assertEqual(len(self.server.requests), len(cases))

    async def test_untrusted_policy_host(self) -> None:
        """A policy host whose certificate Rail cannot verify: sts-webpki-invalid."""
        self.server.serve(POLICY)
        stranger = TestCA.create(Path(self.mktemp()).resolve(), "Unknown CA")
        fetched = await self.fetcher(stranger).fetch("dest.example")
        self.assertEqual(fetched.result, "sts-webpki-invalid", fetched)
        self.assertEqual(self.server.requests, [])

    async def test_no_policy_host(self) -> None:
        """No address for mta-sts.<domain>: a fetch error naming the host."""
        fetched = await self.fetcher().fetch("none.example")
        self.assertEqual(fetched.result, "sts-policy-fetch-error")
        self.assertIn("mta-sts.none.example", fetched.reason or "")

    async def test_internal_policy_host_refused(self) -> None:
        """Without allow_private, a policy host resolving to loopback, a private address,
        or a public and a link-local one is not contacted: a fetch error naming the
        address and delivery.mta_sts.allow_private."""
        self.server.serve(POLICY)
        fetcher = self.fetcher(allow_private=False)
        for domain, address in [
            ("dest.example", "127.0.0.1 is loopback"),
            ("private.example", "10.20.30.40 is private"),
            ("mixed.example", "169.254.169.254 is link-local"),
        ]:
            fetched = await fetcher.fetch(domain)
            self.assertIsNone(fetched.policy)
            self.assertEqual(fetched.result, "sts-policy-fetch-error", domain)
            self.assertIn(address, fetched.reason or "")
            self.assertIn("delivery.mta_sts.allow_private is false", fetched.reason or "")
        self.assertEqual(self.server.requests, [])

    def test_url(self) -> None:
        """The well-known URL; a port only when not 443 (tests)."""
        self.assertEqual(
            policy_url("example.com"), "https://mta-sts.example.com/.well-known/mta-sts.txt"
        )
        self.assertEqual(
            policy_url("example.com", 8443),
            "https://mta-sts.example.com:8443/.well-known/mta-sts.txt",
        )
