"""Response rate limiting: a token bucket per client network and response, with slip."""

from __future__ import annotations

import tracemalloc
from collections.abc import Hashable

from twisted.trial.unittest import SynchronousTestCase

from rail.dns.ratelimit import RateLimiter, response_key

A, MX, TXT, IN = 1, 15, 16, 1
NOERROR, NXDOMAIN, REFUSED, FORMERR = 0, 3, 5, 1
MX_ANSWER = response_key(NOERROR, True, "example.com", MX, IN, "example.com")


def _answer(name: str, qtype: int = A) -> tuple[Hashable, ...]:
    return response_key(NOERROR, True, name, qtype, IN, "example.com")


class ResponseKeyTests(SynchronousTestCase):
    def test_answers_by_name_type_class(self) -> None:
        """Answers differ by name, type and class; the zone does not matter."""
        self.assertEqual(_answer("a.example.com"), _answer("a.example.com"))
        self.assertNotEqual(_answer("a.example.com"), _answer("b.example.com"))
        self.assertNotEqual(_answer("a.example.com", A), _answer("a.example.com", TXT))
        self.assertNotEqual(
            response_key(NOERROR, True, "a.example.com", A, IN, "example.com"),
            response_key(NOERROR, True, "a.example.com", A, 255, "example.com"),
        )

    def test_nodata_apart_from_answers(self) -> None:
        """NODATA for a name and type is counted apart from an answer for it."""
        self.assertNotEqual(
            response_key(NOERROR, False, "a.example.com", A, IN, "example.com"),
            _answer("a.example.com"),
        )

    def test_nxdomain_by_zone(self) -> None:
        """Every NXDOMAIN in one zone is one response, whatever the name or type asked;
        other zones' are others."""
        self.assertEqual(
            response_key(NXDOMAIN, False, "x1.example.com", A, IN, "example.com"),
            response_key(NXDOMAIN, False, "x2.example.com", TXT, IN, "example.com"),
        )
        self.assertNotEqual(
            response_key(NXDOMAIN, False, "x1.example.com", A, IN, "example.com"),
            response_key(NXDOMAIN, False, "x1.example.org", A, IN, "example.org"),
        )

    def test_errors_by_client_alone(self) -> None:
        """REFUSED, FORMERR and the like share one key whatever was asked."""
        self.assertEqual(
            response_key(REFUSED, False, "elsewhere.test", A, IN, None),
            response_key(FORMERR, False, "", 0, 0, None),
        )


class RateLimiterTests(SynchronousTestCase):
    def test_burst_then_drop_and_slip(self) -> None:
        """One second's worth of one answer goes out at once; over that, every second
        answer (slip=2) is sent truncated and the others dropped."""
        limiter = RateLimiter(5, 2)
        decisions = [limiter.check("198.51.100.7", MX_ANSWER, 100.0) for _ in range(9)]
        self.assertEqual(decisions, ["answer"] * 5 + ["drop", "slip", "drop", "slip"])

    def test_refill(self) -> None:
        """Tokens come back at the configured rate, capped at one second's worth."""
        limiter = RateLimiter(4, 0)
        for _ in range(4):
            limiter.check("198.51.100.7", MX_ANSWER, 10.0)
        self.assertEqual(limiter.check("198.51.100.7", MX_ANSWER, 10.0), "drop")
        self.assertEqual(limiter.check("198.51.100.7", MX_ANSWER, 10.25), "answer")
        self.assertEqual(limiter.check("198.51.100.7", MX_ANSWER, 10.25), "drop")
        decisions = [limiter.check("198.51.100.7", MX_ANSWER, 1000.0) for _ in range(5)]
        self.assertEqual(decisions, ["answer"] * 4 + ["drop"])

    def test_resolver_asking_many_names(self) -> None:
        """A resolver network asking 100 different names within one second, with the
        default 20 per second, gets every answer: each name is its own response."""
        limiter = RateLimiter(20, 2)
        decisions = [
            limiter.check("198.51.100.7", _answer(f"n{i}.example.com"), 50.0 + i / 100)
            for i in range(100)
        ]
        self.assertEqual(set(decisions), {"answer"})

    def test_acme_validation_burst(self) -> None:
        """A CA validating 6 names from three vantage points at once asks A and AAAA
        for each name three times (36 queries in the same instant): all answered with
        the default limits, where one budget per network answered only 20."""
        limiter = RateLimiter(20, 2)
        decisions = [
            limiter.check("198.51.100.7", _answer(f"mta-sts.d{n}.test", qtype), 7.0)
            for n in range(6)
            for qtype in (1, 28)
            for _ in range(3)
        ]
        self.assertEqual(decisions, ["answer"] * 36)

    def test_same_answer_to_one_network_limited(self) -> None:
        """The same answer repeated to one network (a reflection flood aimed at a
        victim there) is limited, with every second one over the limit truncated;
        another answer to the same network and the same answer to another network are
        not affected."""
        limiter = RateLimiter(20, 2)
        decisions = [limiter.check(f"203.0.113.{i % 250}", MX_ANSWER, 3.0) for i in range(60)]
        self.assertEqual(decisions[:20], ["answer"] * 20)
        self.assertEqual(decisions[20:], ["drop", "slip"] * 20)
        self.assertEqual(limiter.check("203.0.113.9", _answer("example.com", TXT), 3.0), "answer")
        self.assertEqual(limiter.check("203.0.114.9", MX_ANSWER, 3.0), "answer")

    def test_random_names_limited_by_zone(self) -> None:
        """A flood of made-up names gets NXDOMAIN, counted per zone: limited like one
        response."""
        limiter = RateLimiter(10, 0)
        decisions = [
            limiter.check(
                "203.0.113.1",
                response_key(NXDOMAIN, False, f"r{i}.example.com", A, IN, "example.com"),
                1.0,
            )
            for i in range(30)
        ]
        self.assertEqual(decisions, ["answer"] * 10 + ["drop"] * 20)

    def test_networks(self) -> None:
        """Addresses in one /24 (IPv4) or /56 (IPv6) share a budget; others do not."""
        limiter = RateLimiter(1, 0)
        check = limiter.check
        self.assertEqual(check("198.51.100.1", MX_ANSWER, 0.0), "answer")
        self.assertEqual(check("198.51.100.200", MX_ANSWER, 0.0), "drop")
        self.assertEqual(check("198.51.101.1", MX_ANSWER, 0.0), "answer")
        self.assertEqual(check("2001:db8:0:ff::1", MX_ANSWER, 0.0), "answer")
        self.assertEqual(check("2001:db8:0:1::2", MX_ANSWER, 0.0), "drop")
        self.assertEqual(check("2001:db8:0:100::1", MX_ANSWER, 0.0), "answer")

    def test_prefixes_configurable(self) -> None:
        """With /32, each IPv4 address has its own budget; mapped IPv6 counts as IPv4."""
        limiter = RateLimiter(1, 0, ipv4_prefix=32)
        self.assertEqual(limiter.check("198.51.100.1", MX_ANSWER, 0.0), "answer")
        self.assertEqual(limiter.check("198.51.100.2", MX_ANSWER, 0.0), "answer")
        self.assertEqual(limiter.check("::ffff:198.51.100.1", MX_ANSWER, 0.0), "drop")

    def test_slip_one(self) -> None:
        """slip=1 sends every answer over the limit truncated."""
        limiter = RateLimiter(1, 1)
        limiter.check("192.0.2.1", MX_ANSWER, 0.0)
        self.assertEqual(
            [limiter.check("192.0.2.1", MX_ANSWER, 0.0) for _ in range(3)], ["slip"] * 3
        )

    def test_disabled(self) -> None:
        """responses_per_second 0 answers everything and keeps no table."""
        limiter = RateLimiter(0, 2)
        self.assertEqual(
            {limiter.check("192.0.2.1", MX_ANSWER, 0.0) for _ in range(100)}, {"answer"}
        )
        self.assertEqual(len(limiter), 0)

    def test_table_bounded(self) -> None:
        """Under a flood of random names from random networks, the table never holds
        more than ``max_entries`` buckets."""
        limiter = RateLimiter(20, 2, max_entries=100)
        for i in range(5_000):
            address = f"10.{i % 200}.{i % 256}.1"
            limiter.check(address, _answer(f"r{i}.example.com"), i / 1000)
            self.assertLessEqual(len(limiter), 100)
        self.assertEqual(len(limiter), 100)

    def test_active_bucket_survives_eviction(self) -> None:
        """Eviction drops the least recently used bucket: a flood aimed at one network
        stays limited while other responses churn through a full table."""
        limiter = RateLimiter(5, 0, max_entries=10)
        for _ in range(5):
            limiter.check("203.0.113.1", MX_ANSWER, 0.0)
        for i in range(100):
            limiter.check("198.51.100.1", _answer(f"r{i}.example.com"), 0.0)
            self.assertEqual(limiter.check("203.0.113.1", MX_ANSWER, 0.0), "drop")

    def test_memory_per_bucket(self) -> None:
        """The default table (100,000 buckets) stays within tens of megabytes: each
        bucket costs well under 500 bytes."""
        limiter = RateLimiter(20, 2, max_entries=10_000)
        names = [f"name-{i}.mta-sts.example.com" for i in range(10_000)]
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i, name in enumerate(names):
                limiter.check(f"10.{i >> 8 & 255}.{i & 255}.1", _answer(name), 0.0)
            used = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        self.assertLess(used / 10_000, 500)
