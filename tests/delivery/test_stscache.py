"""The MTA-STS cache's decisions with exact times, and its file format."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.stscache import (
    RECHECK,
    CachedPolicy,
    NoPolicy,
    after_fetch,
    after_txt,
    dump_entries,
    freshness,
    load_entries,
)
from rail.delivery.stspolicy import parse_policy

TEXT = "version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 10000\n"
POLICY = parse_policy(TEXT)
T0 = 1_000_000.0
CACHED = CachedPolicy(POLICY, "id1", T0, T0)


class FreshnessTests(SynchronousTestCase):
    def test_table(self) -> None:
        """missing without an entry or once expired; stale after RECHECK or half of
        max_age; fresh otherwise; NoPolicy is fresh for RECHECK."""
        cases = [
            (None, T0, "missing"),
            (CACHED, T0 + 1, "fresh"),
            (CACHED, T0 + RECHECK, "stale"),
            (CachedPolicy(POLICY, "id1", T0, T0 + 5000), T0 + 5000, "stale"),
            (CachedPolicy(POLICY, "id1", T0, T0 + 4000), T0 + 4500, "fresh"),
            (CACHED, T0 + 10000, "missing"),
            (NoPolicy(T0), T0 + RECHECK - 1, "fresh"),
            (NoPolicy(T0), T0 + RECHECK, "missing"),
        ]
        for entry, now, expected in cases:
            self.assertEqual(freshness(entry, now), expected, (entry, now))


class FoldTests(SynchronousTestCase):
    def test_txt_same_id(self) -> None:
        """The same id keeps the policy, marked checked."""
        self.assertEqual(
            after_txt(CACHED, "id1", T0 + 100), CachedPolicy(POLICY, "id1", T0, T0 + 100)
        )

    def test_txt_new_id_or_half_gone(self) -> None:
        """A new id, or half of max_age gone, asks for a fetch (None)."""
        self.assertIsNone(after_txt(CACHED, "id2", T0 + 100))
        self.assertIsNone(after_txt(CACHED, "id1", T0 + 5000))

    def test_txt_gone_keeps_policy(self) -> None:
        """No TXT record (or a failed lookup) keeps an unexpired policy (RFC 8461 §5.1)."""
        self.assertEqual(after_txt(CACHED, None, T0 + 100).checked_at, T0 + 100)  # type: ignore[union-attr]
        self.assertEqual(after_txt(CACHED, None, T0 + 10000), NoPolicy(T0 + 10000))
        self.assertEqual(after_txt(None, None, T0), NoPolicy(T0))
        self.assertIsNone(after_txt(None, "id1", T0))

    def test_fetch(self) -> None:
        """A fetched policy replaces the entry; a failed fetch keeps an unexpired one."""
        self.assertEqual(after_fetch(None, "id2", POLICY, T0), CachedPolicy(POLICY, "id2", T0, T0))
        kept = after_fetch(CACHED, "id2", None, T0 + 100)
        self.assertEqual(kept, CachedPolicy(POLICY, "id1", T0, T0 + 100))
        self.assertEqual(after_fetch(CACHED, "id2", None, T0 + 10000), NoPolicy(T0 + 10000))
        self.assertEqual(after_fetch(None, "id2", None, T0), NoPolicy(T0))


class FileTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """Policies survive dump and load (checked_at reset to the fetch time, so they
        are re-checked on first use); NoPolicy entries are not kept."""
        data = dump_entries({"a.example": CACHED, "b.example": NoPolicy(T0)})
        loaded = load_entries(data, T0 + 10)
        self.assertEqual(loaded, {"a.example": CACHED})
        self.assertEqual(freshness(loaded["a.example"], T0 + RECHECK), "stale")

    def test_expired_and_malformed_skipped(self) -> None:
        """Expired, future-dated, unparsable entries and foreign files are dropped."""
        document = {
            "format": 1,
            "policies": {
                "old.example": {"id": "x", "fetched_at": T0 - 20000, "text": TEXT},
                "future.example": {"id": "x", "fetched_at": T0 + 50, "text": TEXT},
                "bad.example": {"id": "x", "fetched_at": T0, "text": "version: STSv9\n"},
                "odd.example": {"id": 5, "fetched_at": T0, "text": TEXT},
                "ok.example": {"id": "x", "fetched_at": T0, "text": TEXT},
            },
        }
        loaded = load_entries(json.dumps(document).encode(), T0 + 1)
        self.assertEqual(list(loaded), ["ok.example"])
        self.assertEqual(load_entries(b"not json", T0), {})
        self.assertEqual(load_entries(b'{"format": 2, "policies": {}}', T0), {})
        self.assertEqual(load_entries(b"[]", T0), {})
