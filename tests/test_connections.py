"""The connection budget: address grouping, per-key counts, caps sized from the descriptor limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rail.config import parse_config
from rail.connections import (
    MIN_LISTENER_CAP,
    DescriptorLimit,
    GateLimits,
    GroupCounter,
    default_reserve,
    listener_cap,
    listener_limits,
    peer_group,
    raise_descriptor_limit,
)

_INFINITY = -1


def _config(**changes: Any) -> Any:
    data: dict[str, Any] = {"hostname": "mail.example.com", "tls": {"self_signed": True}}
    data.update(changes)
    return parse_config(data, Path("/etc/rail"))


class PeerGroupTests(SynchronousTestCase):
    def test_ipv4_counts_alone(self) -> None:
        """Each IPv4 address is its own group."""
        self.assertEqual(peer_group("192.0.2.1"), "192.0.2.1")
        self.assertNotEqual(peer_group("192.0.2.1"), peer_group("192.0.2.2"))

    def test_ipv4_mapped_is_ipv4(self) -> None:
        """An IPv4-mapped IPv6 peer (a dual-stack socket) counts as its IPv4 address."""
        self.assertEqual(peer_group("::ffff:192.0.2.1"), "192.0.2.1")

    def test_ipv6_grouped_by_prefix(self) -> None:
        """IPv6 addresses in one /64 (the default) share a group; another /64 does not."""
        self.assertEqual(peer_group("2001:db8:0:1::1"), "2001:db8:0:1::/64")
        self.assertEqual(peer_group("2001:db8:0:1:ffff::9"), peer_group("2001:db8:0:1::1"))
        self.assertNotEqual(peer_group("2001:db8:0:2::1"), peer_group("2001:db8:0:1::1"))

    def test_ipv6_prefix_configurable(self) -> None:
        """A /48 groups what /64 separates; /128 counts every address alone."""
        self.assertEqual(peer_group("2001:db8:0:2::1", 48), peer_group("2001:db8:0:1::1", 48))
        self.assertEqual(peer_group("2001:db8::1", 128), "2001:db8::1")
        self.assertNotEqual(peer_group("2001:db8::1", 128), peer_group("2001:db8::2", 128))

    def test_scope_and_non_ip(self) -> None:
        """A link-local scope suffix is ignored; a non-IP peer counts under its text."""
        self.assertEqual(peer_group("fe80::1%eth0"), "fe80::/64")
        self.assertEqual(peer_group("/run/rail.sock"), "/run/rail.sock")


class GroupCounterTests(SynchronousTestCase):
    def test_limit_and_release(self) -> None:
        """A key gets ``limit`` slots; releasing one lets the next in; an emptied key
        leaves no entry, and releasing an absent key does nothing."""
        counter = GroupCounter(2)
        self.assertTrue(counter.acquire("a"))
        self.assertTrue(counter.acquire("a"))
        self.assertFalse(counter.acquire("a"))
        self.assertTrue(counter.acquire("b"))
        self.assertEqual((counter.count("a"), len(counter)), (2, 2))
        counter.release("a")
        self.assertTrue(counter.acquire("a"))
        for _ in range(3):
            counter.release("a")
        counter.release("b")
        self.assertEqual(len(counter), 0)


class BudgetTests(SynchronousTestCase):
    def test_reserve_formula(self) -> None:
        """The default reserve is 512 plus two per outbound and webhook connection."""
        self.assertEqual(default_reserve(100, 4), 512 + 208)

    def test_listener_cap(self) -> None:
        """What the reserve leaves is shared equally; never below the floor."""
        self.assertEqual(listener_cap(20_000, 720, 5), 3856)
        self.assertEqual(listener_cap(1024, 720, 5), 60)
        self.assertEqual(listener_cap(512, 720, 5), MIN_LISTENER_CAP)
        self.assertEqual(listener_cap(512, 0, 0), MIN_LISTENER_CAP)

    def test_listener_limits_defaults(self) -> None:
        """Every enabled TCP listener gets the shared cap; port 25's per-address bound is
        ``inbound.max_connections_per_ip``; IPv6 /64 and eviction after 1 s by default."""
        config = _config(listen={"dns": "tcp:5353"}, inbound={"max_connections_per_ip": 7})
        limits = listener_limits(config, 20_000)
        cap = listener_cap(20_000, default_reserve(100, 4), 5)
        self.assertEqual(
            limits,
            {
                "https": GateLimits(max_connections=cap, per_ip=100, evict_idle=1.0),
                "submission": GateLimits(max_connections=cap, per_ip=100, evict_idle=1.0),
                "inbound": GateLimits(max_connections=cap, per_ip=7, evict_idle=1.0),
                "http": GateLimits(max_connections=cap, per_ip=16, evict_idle=1.0),
                "dns": GateLimits(max_connections=cap, per_ip=16, evict_idle=1.0),
            },
        )

    def test_listener_limits_configured(self) -> None:
        """Disabled listeners take no share; a set reserve, per-address bounds, prefix and
        eviction are used as given; ``max_per_listener`` overrides the derived cap."""
        config = _config(
            listen={"http": None, "inbound": None, "dns": None},
            limits={
                "connections": {
                    "reserve": 1000,
                    "per_ip": {"https": 5, "submission": 6},
                    "ipv6_prefix": 56,
                    "evict_idle": None,
                }
            },
        )
        limits = listener_limits(config, 7000)
        self.assertEqual(sorted(limits), ["https", "submission"])
        self.assertEqual(
            limits["https"],
            GateLimits(max_connections=3000, per_ip=5, ipv6_prefix=56, evict_idle=None),
        )
        fixed = _config(limits={"connections": {"max_per_listener": 50}})
        self.assertEqual(listener_limits(fixed, 7000)["inbound"].max_connections, 50)


class RaiseDescriptorLimitTests(SynchronousTestCase):
    def _fake(self, soft: int, hard: int, fail: bool = False) -> tuple[Any, Any, list[Any]]:
        calls: list[Any] = []

        def get(which: int) -> tuple[int, int]:
            return soft, hard

        def set_(which: int, limits: tuple[int, int]) -> None:
            calls.append(limits)
            if fail:
                raise ValueError("not allowed")

        return get, set_, calls

    def test_raises_soft_to_hard(self) -> None:
        """The soft limit goes up to the hard limit, which stays."""
        get, set_, calls = self._fake(1024, 20_000)
        limit = raise_descriptor_limit(get, set_, _INFINITY)
        self.assertEqual(limit, DescriptorLimit(before=1024, soft=20_000, hard=20_000))
        self.assertEqual(calls, [(20_000, 20_000)])

    def test_already_at_hard(self) -> None:
        """Nothing is set when the soft limit is already the hard one."""
        get, set_, calls = self._fake(20_000, 20_000)
        self.assertEqual(raise_descriptor_limit(get, set_, _INFINITY).soft, 20_000)
        self.assertEqual(calls, [])

    def test_unlimited_hard(self) -> None:
        """An unlimited hard limit is asked for as 1,048,576; a refusal keeps the old soft
        limit rather than failing the start."""
        get, set_, calls = self._fake(256, _INFINITY)
        self.assertEqual(raise_descriptor_limit(get, set_, _INFINITY).soft, 1_048_576)
        get, set_, calls = self._fake(256, _INFINITY, fail=True)
        limit = raise_descriptor_limit(get, set_, _INFINITY)
        self.assertEqual((limit.before, limit.soft), (256, 256))
        self.assertEqual(calls, [(1_048_576, _INFINITY)])

    def test_unlimited_soft(self) -> None:
        """An unlimited soft limit is counted as 1,048,576 and left alone."""
        get, set_, calls = self._fake(_INFINITY, _INFINITY)
        self.assertEqual(raise_descriptor_limit(get, set_, _INFINITY).soft, 1_048_576)
        self.assertEqual(calls, [])
