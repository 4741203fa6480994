"""Pure webhook decisions: payload, outcome table, Retry-After, address policy."""

from __future__ import annotations

import base64
import json

from twisted.trial.unittest import SynchronousTestCase

from rail.webhooks.addresses import (
    WebhookURL,
    address_problem,
    addresses_problem,
    parse_webhook_url,
)
from rail.webhooks.outcome import (
    Answered,
    Attempt,
    Refused,
    Unreachable,
    WebhookPolicy,
    decide,
    parse_retry_after,
)
from rail.webhooks.payload import webhook_body, webhook_payload
from tests.webhooks.helpers import AUTHENTICATION, DATA, MESSAGE_ID, T0, MidRandom, job

_POLICY = WebhookPolicy(schedule=(30.0, 60.0), max_age=3 * 86400.0)


class PayloadTests(SynchronousTestCase):
    def test_fields(self) -> None:
        """The seed's fields exactly, plus type, size and authentication."""
        self.assertEqual(
            webhook_payload(job()),
            {
                "type": "inbound",
                "message_id": MESSAGE_ID,
                "from": "bob@example.net",
                "to": ["noreply@ataca.io"],
                "subject": "Réponse",
                "raw_message": base64.b64encode(DATA).decode(),
                "received_at": "2026-03-28T12:00:00Z",
                "size": len(DATA),
                "authentication": AUTHENTICATION,
            },
        )

    def test_null_sender_and_body_bytes(self) -> None:
        """A null sender is "from": ""; the body is compact ASCII JSON that decodes to
        the payload and raw_message to the stored bytes."""
        body = webhook_body(job(sender=""))
        self.assertTrue(body.isascii())
        self.assertNotIn(b", ", body)
        document = json.loads(body)
        self.assertEqual(document["from"], "")
        self.assertEqual(document["subject"], "Réponse")
        self.assertEqual(base64.b64decode(document["raw_message"]), DATA)

    def test_body_is_the_payload_encoded(self) -> None:
        """The body is exactly the compact ASCII JSON encoding of the payload (the
        message is spliced in as bytes), whatever the other fields hold, a subject that
        spells the raw_message key included."""
        for fields in (
            {},
            {"subject": '"raw_message":"", "x": "\\"'},
            {"subject": None, "sender": ""},
            {"data": b""},
        ):
            one = job(**fields)
            expected = json.dumps(webhook_payload(one), separators=(",", ":"), ensure_ascii=True)
            self.assertEqual(webhook_body(one), expected.encode("ascii"), fields)


class OutcomeTests(SynchronousTestCase):
    def decide(self, attempt: Attempt, now: float = T0, attempts: int = 0) -> tuple[object, ...]:
        result = decide(job(attempts=attempts), attempt, now=now, policy=_POLICY, rng=MidRandom())
        return (result.status, result.reply, result.next_attempt_at)

    def test_table(self) -> None:
        """2xx delivered; 3xx failed (not followed); 4xx failed except 408 and 429;
        5xx and network failures retried on the schedule; policy refusals failed."""
        cases: list[tuple[Attempt, tuple[object, ...]]] = [
            (Answered(200), ("delivered", "HTTP 200 OK", None)),
            (Answered(204), ("delivered", "HTTP 204 No Content", None)),
            (Answered(302), ("failed", "redirect not followed (HTTP 302 Found)", None)),
            (Answered(404), ("failed", "HTTP 404 Not Found", None)),
            (Answered(410), ("failed", "HTTP 410 Gone", None)),
            (Answered(408), ("deferred", "HTTP 408 Request Timeout", T0 + 30)),
            (Answered(429), ("deferred", "HTTP 429 Too Many Requests", T0 + 30)),
            (Answered(500), ("deferred", "HTTP 500 Internal Server Error", T0 + 30)),
            (Answered(503), ("deferred", "HTTP 503 Service Unavailable", T0 + 30)),
            (Answered(599), ("deferred", "HTTP 599", T0 + 30)),
            (Unreachable("timeout after 30s"), ("deferred", "timeout after 30s", T0 + 30)),
            (
                Unreachable("connection refused (192.0.2.1:443)"),
                ("deferred", "connection refused (192.0.2.1:443)", T0 + 30),
            ),
            (
                Refused("address not allowed: 10.0.0.5 is private"),
                ("failed", "address not allowed: 10.0.0.5 is private", None),
            ),
        ]
        for attempt, expected in cases:
            self.assertEqual(self.decide(attempt), expected, attempt)

    def test_schedule_steps_and_jitter(self) -> None:
        """The n-th failure waits the n-th delay, the last repeating; jitter scales it
        by the injected random factor (here the ±10% extremes)."""
        self.assertEqual(self.decide(Answered(500), attempts=1)[2], T0 + 60)
        self.assertEqual(self.decide(Answered(500), attempts=7)[2], T0 + 60)

        class Low(MidRandom):
            def uniform(self, a: float, b: float) -> float:
                return a

        result = decide(job(), Answered(500), now=T0, policy=_POLICY, rng=Low())
        self.assertAlmostEqual(result.next_attempt_at or 0, T0 + 27)

    def test_retry_after(self) -> None:
        """Retry-After (seconds or HTTP-date) replaces the delay, exactly; it is capped
        at one day and at the expiry instant; zero waits one second; junk is ignored."""
        cases = [
            ("120", T0, T0 + 120),
            ("Sat, 28 Mar 2026 12:05:00 GMT", T0, T0 + 300),
            ("Sat, 28 Mar 2026 11:00:00 GMT", T0, T0 + 1),
            ("0", T0, T0 + 1),
            ("999999", T0, T0 + 86400),
            ("999999", T0 + 2.5 * 86400, T0 + 3 * 86400),
            ("soon", T0, T0 + 30),
        ]
        for value, now, expected in cases:
            attempt = Answered(429, retry_after=value)
            self.assertEqual(self.decide(attempt, now=now)[2], expected, value)
        self.assertEqual(self.decide(Answered(503, retry_after="120"))[2], T0 + 120)

    def test_parse_retry_after(self) -> None:
        """Delay-seconds and HTTP-dates read; others None."""
        self.assertEqual(parse_retry_after("  15 ", T0), 15)
        self.assertEqual(parse_retry_after("Sat, 28 Mar 2026 12:00:10 GMT", T0), 10)
        self.assertIsNone(parse_retry_after(None, T0))
        self.assertIsNone(parse_retry_after("-5", T0))
        self.assertIsNone(parse_retry_after("tomorrow", T0))

    def test_expiry(self) -> None:
        """A failure at or after received_at + max_age fails the job, quoting the last
        reply; a 5xx just before it is retried exactly at the deadline."""
        deadline = T0 + 3 * 86400
        status, reply, when = self.decide(Answered(503), now=deadline)
        self.assertEqual(status, "failed")
        self.assertEqual(
            reply, "expired: no 2xx within 3d; last attempt: HTTP 503 Service Unavailable"
        )
        self.assertIsNone(when)
        self.assertEqual(self.decide(Answered(503), now=deadline - 10)[2], deadline)
        self.assertEqual(self.decide(Answered(429, "60"), now=deadline)[0], "failed")

    def test_result_identifies_the_job(self) -> None:
        """The result names the job's message and client and the attempt time."""
        result = decide(job(), Answered(200), now=T0 + 5, policy=_POLICY, rng=MidRandom())
        self.assertEqual(
            (result.message_id, result.client, result.attempted_at), (MESSAGE_ID, "myapp", T0 + 5)
        )


class AddressPolicyTests(SynchronousTestCase):
    def test_internal_addresses_refused(self) -> None:
        """Every kind of internal address is refused, naming what it is."""
        cases = {
            "127.0.0.1": "127.0.0.1 is loopback",
            "10.0.0.5": "10.0.0.5 is private",
            "172.16.1.1": "172.16.1.1 is private",
            "192.168.1.1": "192.168.1.1 is private",
            "169.254.169.254": "169.254.169.254 is link-local",
            "100.64.0.1": "100.64.0.1 is not globally routable",
            "0.0.0.0": "0.0.0.0 is unspecified",  # noqa: S104 (an address to refuse)
            "224.0.0.1": "224.0.0.1 is multicast",
            "240.0.0.1": "240.0.0.1 is private",
            "255.255.255.255": "255.255.255.255 is private",
            "::1": "::1 is loopback",
            "::": ":: is unspecified",
            "fe80::1": "fe80::1 is link-local",
            "fc00::1": "fc00::1 is private",
            "fd12:3456::1": "fd12:3456::1 is private",
            "ff02::1": "ff02::1 is multicast",
            "fec0::1": "fec0::1 is site-local",
            "::ffff:10.0.0.5": "::ffff:a00:5 is private (embeds 10.0.0.5)",
            "::ffff:127.0.0.1": "::ffff:7f00:1 is loopback (embeds 127.0.0.1)",
            "64:ff9b::a9fe:a9fe": "64:ff9b::a9fe:a9fe is link-local (embeds 169.254.169.254)",
            "2002:a00:1::1": "2002:a00:1::1 is private (embeds 10.0.0.1)",
        }
        for address, problem in cases.items():
            self.assertEqual(address_problem(address, allow_private=False), problem, address)
            self.assertIsNone(address_problem(address, allow_private=True), address)

    def test_global_addresses_allowed(self) -> None:
        """Global unicast addresses (and IPv4-mapped ones) pass."""
        for address in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"):
            self.assertIsNone(address_problem(address, allow_private=False), address)

    def test_every_resolved_address_checked(self) -> None:
        """One internal address among public ones refuses the host."""
        target = WebhookURL("https://h.example/x", "https", "h.example", 443)
        self.assertEqual(
            addresses_problem(target, ["8.8.8.8", "10.0.0.5"], allow_private=False),
            "address not allowed: 10.0.0.5 is private",
        )
        self.assertIsNone(addresses_problem(target, ["8.8.8.8"], allow_private=False))

    def test_urls(self) -> None:
        """https URLs parse (default port 443, host lower-cased, IPv6 unbracketed);
        http only to loopback with allow_http_loopback, and then only loopback
        addresses."""
        self.assertEqual(
            parse_webhook_url("https://Hooks.Example.com/mail?x=1", allow_http_loopback=False),
            WebhookURL("https://Hooks.Example.com/mail?x=1", "https", "hooks.example.com", 443),
        )
        self.assertEqual(
            parse_webhook_url("https://[2001:db8::1]:8443/", allow_http_loopback=False),
            WebhookURL("https://[2001:db8::1]:8443/", "https", "2001:db8::1", 8443),
        )
        refused = parse_webhook_url("http://hooks.example.com/", allow_http_loopback=True)
        self.assertIsInstance(refused, str)
        assert isinstance(refused, str)
        self.assertTrue(refused.startswith("webhook URL not allowed: "), refused)
        self.assertIsInstance(
            parse_webhook_url("http://127.0.0.1:8080/", allow_http_loopback=False), str
        )
        local = parse_webhook_url("http://localhost:8080/h", allow_http_loopback=True)
        assert isinstance(local, WebhookURL)
        self.assertEqual((local.scheme, local.host, local.port), ("http", "localhost", 8080))
        self.assertIsNone(addresses_problem(local, ["127.0.0.1", "::1"], allow_private=True))
        self.assertEqual(
            addresses_problem(local, ["192.0.2.1"], allow_private=True),
            "address not allowed: 192.0.2.1 is not loopback (http webhook)",
        )
        self.assertIsInstance(
            parse_webhook_url("https://user:pw@hooks.example.com/", allow_http_loopback=False), str
        )

    def test_private_off_means_no_loopback(self) -> None:
        """allow_private off wins over allow_http_loopback: an http:// webhook to
        127.0.0.1, ::1 or localhost (Rail's own ports included) is refused at every
        resolved address, and so is https:// to loopback."""
        for url, addresses in (
            ("http://127.0.0.1:8025/", ["127.0.0.1"]),
            ("http://[::1]:8443/hook", ["::1"]),
            ("http://localhost:8465/", ["127.0.0.1", "::1"]),
        ):
            target = parse_webhook_url(url, allow_http_loopback=True)
            assert isinstance(target, WebhookURL), url
            self.assertEqual(
                addresses_problem(target, addresses, allow_private=False),
                f"address not allowed: {addresses[0]} is loopback"
                " (webhooks.allow_private is false)",
                url,
            )
            self.assertIsNone(addresses_problem(target, addresses, allow_private=True), url)
        secure = parse_webhook_url("https://localhost:8443/", allow_http_loopback=True)
        assert isinstance(secure, WebhookURL)
        self.assertEqual(
            addresses_problem(secure, ["127.0.0.1"], allow_private=False),
            "address not allowed: 127.0.0.1 is loopback",
        )
