"""Response rate limiting: a token bucket per client network, with slip."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rail.dns.ratelimit import RateLimiter


class RateLimiterTests(SynchronousTestCase):
    def test_burst_then_drop_and_slip(self) -> None:
        """One second's worth of answers goes out at once; over that, every second
        answer (slip=2) is sent truncated and the others dropped."""
        limiter = RateLimiter(5, 2)
        decisions = [limiter.check("198.51.100.7", 100.0) for _ in range(9)]
        self.assertEqual(decisions, ["answer"] * 5 + ["drop", "slip", "drop", "slip"])

    def test_refill(self) -> None:
        """Tokens come back at the configured rate, capped at one second's worth."""
        limiter = RateLimiter(4, 0)
        for _ in range(4):
            limiter.check("198.51.100.7", 10.0)
        self.assertEqual(limiter.check("198.51.100.7", 10.0), "drop")
        self.assertEqual(limiter.check("198.51.100.7", 10.25), "answer")
        self.assertEqual(limiter.check("198.51.100.7", 10.25), "drop")
        decisions = [limiter.check("198.51.100.7", 1000.0) for _ in range(5)]
        self.assertEqual(decisions, ["answer"] * 4 + ["drop"])

    def test_networks(self) -> None:
        """Addresses in one /24 (IPv4) or /56 (IPv6) share a budget; others do not."""
        limiter = RateLimiter(1, 0)
        self.assertEqual(limiter.check("198.51.100.1", 0.0), "answer")
        self.assertEqual(limiter.check("198.51.100.200", 0.0), "drop")
        self.assertEqual(limiter.check("198.51.101.1", 0.0), "answer")
        self.assertEqual(limiter.check("2001:db8:0:ff::1", 0.0), "answer")
        self.assertEqual(limiter.check("2001:db8:0:1::2", 0.0), "drop")
        self.assertEqual(limiter.check("2001:db8:0:100::1", 0.0), "answer")

    def test_prefixes_configurable(self) -> None:
        """With /32, each IPv4 address has its own budget; mapped IPv6 counts as IPv4."""
        limiter = RateLimiter(1, 0, ipv4_prefix=32)
        self.assertEqual(limiter.check("198.51.100.1", 0.0), "answer")
        self.assertEqual(limiter.check("198.51.100.2", 0.0), "answer")
        self.assertEqual(limiter.check("::ffff:198.51.100.1", 0.0), "drop")

    def test_slip_one(self) -> None:
        """slip=1 sends every answer over the limit truncated."""
        limiter = RateLimiter(1, 1)
        limiter.check("192.0.2.1", 0.0)
        self.assertEqual([limiter.check("192.0.2.1", 0.0) for _ in range(3)], ["slip"] * 3)

    def test_disabled(self) -> None:
        """responses_per_second 0 answers everything."""
        limiter = RateLimiter(0, 2)
        self.assertEqual({limiter.check("192.0.2.1", 0.0) for _ in range(100)}, {"answer"})

    def test_bounded_memory(self) -> None:
        """The table of networks stays bounded: idle networks are forgotten first."""
        limiter = RateLimiter(10, 2, ipv4_prefix=32, max_networks=100)
        for i in range(100):
            limiter.check(f"10.0.0.{i}", 0.0)
        self.assertEqual(len(limiter), 100)
        limiter.check("10.0.1.1", 5.0)  # the others are idle by then
        self.assertEqual(len(limiter), 1)
        for i in range(300):
            limiter.check(f"10.1.{i // 256}.{i % 256}", 6.0)
        self.assertLessEqual(len(limiter), 100)
