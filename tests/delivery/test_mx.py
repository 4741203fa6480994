"""MX ordering, null MX and address literals: pure decisions over plain values."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.mx import (
    is_address_literal,
    is_null_mx,
    order_addresses,
    order_hosts,
    parse_address_literal,
)

RECORDS = [
    (10, "c.mx.test"),
    (20, "e.mx.test"),
    (10, "a.mx.test"),
    (5, "z.mx.test"),
    (20, "d.mx.test"),
    (10, "b.mx.test"),
]


class NullMXTests(SynchronousTestCase):
    def test_null_mx(self) -> None:
        """One record, preference 0, the root as exchange, however it is written."""
        self.assertTrue(is_null_mx([(0, "")]))
        self.assertTrue(is_null_mx([(0, ".")]))

    def test_not_null_mx(self) -> None:
        """Anything else is not the RFC 7505 form: other preference, extra records,
        a real exchange or no records at all."""
        self.assertFalse(is_null_mx([(10, "")]))
        self.assertFalse(is_null_mx([(0, ""), (10, "mx.test")]))
        self.assertFalse(is_null_mx([(0, "mx.test")]))
        self.assertFalse(is_null_mx([]))


class OrderHostsTests(SynchronousTestCase):
    def test_seeded_order(self) -> None:
        """Preference order is kept; equal preferences are shuffled by the rng."""
        self.assertEqual(
            order_hosts(RECORDS, random.Random(1)),
            ["z.mx.test", "b.mx.test", "c.mx.test", "a.mx.test", "d.mx.test", "e.mx.test"],
        )
        self.assertEqual(
            order_hosts(RECORDS, random.Random(4)),
            ["z.mx.test", "c.mx.test", "b.mx.test", "a.mx.test", "e.mx.test", "d.mx.test"],
        )

    def test_groups_always_in_preference_order(self) -> None:
        """Whatever the seed, every host of a lower preference comes first, and over a
        few seeds the order within a preference does vary."""
        seen = set()
        for seed in range(20):
            hosts = order_hosts(RECORDS, random.Random(seed))
            self.assertEqual(hosts[0], "z.mx.test")
            self.assertEqual(set(hosts[1:4]), {"a.mx.test", "b.mx.test", "c.mx.test"})
            self.assertEqual(set(hosts[4:]), {"d.mx.test", "e.mx.test"})
            seen.add(tuple(hosts))
        self.assertGreater(len(seen), 3)

    def test_independent_of_answer_order(self) -> None:
        """Resolvers rotate record order; the same seed gives the same hosts anyway."""
        self.assertEqual(
            order_hosts(list(reversed(RECORDS)), random.Random(3)),
            order_hosts(RECORDS, random.Random(3)),
        )

    def test_duplicates_and_case(self) -> None:
        """A host listed twice keeps its best preference; names compare without case
        or trailing dot and come back lower-cased."""
        self.assertEqual(
            order_hosts([(20, "MX.test."), (30, "b.test"), (10, "mx.TEST")], random.Random(0)),
            ["mx.test", "b.test"],
        )

    def test_root_entries_dropped(self) -> None:
        """Root exchanges are dropped; only root exchanges leave nothing to try."""
        self.assertEqual(order_hosts([(0, ""), (10, "mx.test")], random.Random(0)), ["mx.test"])
        self.assertEqual(order_hosts([(10, ".")], random.Random(0)), [])
        self.assertEqual(order_hosts([], random.Random(0)), [])


class OrderAddressesTests(SynchronousTestCase):
    def test_interleaved_starting_with_ipv6(self) -> None:
        """Families alternate, IPv6 first, the longer family's rest at the end."""
        self.assertEqual(
            order_addresses(["2001:db8::1", "2001:db8::2"], ["192.0.2.1"]),
            ["2001:db8::1", "192.0.2.1", "2001:db8::2"],
        )
        self.assertEqual(
            order_addresses(["2001:db8::1"], ["192.0.2.1", "192.0.2.2", "192.0.2.3"]),
            ["2001:db8::1", "192.0.2.1", "192.0.2.2", "192.0.2.3"],
        )

    def test_single_family(self) -> None:
        """A host with one family has just those addresses, in DNS order."""
        self.assertEqual(
            order_addresses([], ["192.0.2.2", "192.0.2.1"]), ["192.0.2.2", "192.0.2.1"]
        )
        self.assertEqual(order_addresses(["::1"], []), ["::1"])
        self.assertEqual(order_addresses([], []), [])

    def test_duplicates_dropped(self) -> None:
        """An address listed twice is tried once."""
        self.assertEqual(
            order_addresses(["::1", "::1"], ["192.0.2.1", "192.0.2.1"]), ["::1", "192.0.2.1"]
        )


class AddressLiteralTests(SynchronousTestCase):
    def test_valid_literals(self) -> None:
        """IPv4 and tagged IPv6 literals name one address, in canonical form."""
        self.assertEqual(parse_address_literal("[192.0.2.1]"), "192.0.2.1")
        self.assertEqual(parse_address_literal("[IPv6:2001:DB8:0::1]"), "2001:db8::1")
        self.assertEqual(parse_address_literal("[ipv6:::1]"), "::1")

    def test_invalid_literals(self) -> None:
        """Untagged IPv6, zone ids, general literals and malformed text are refused."""
        for text in [
            "[2001:db8::1]",
            "[IPv6:fe80::1%eth0]",
            "[IPv6:192.0.2.1]",
            "[x-tag:abc]",
            "[192.0.2.256]",
            "[192.0.2.1",
            "192.0.2.1",
            "[]",
        ]:
            self.assertIsNone(parse_address_literal(text), text)

    def test_is_address_literal(self) -> None:
        """Only the bracketed form counts as a literal; a domain name does not."""
        self.assertTrue(is_address_literal("[192.0.2.1]"))
        self.assertFalse(is_address_literal("example.com"))
