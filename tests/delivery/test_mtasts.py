"""The MTA-STS policy store: answers from memory once known, one lookup per domain at a
time, refreshes in the background, keeps a cached policy through failures, reports
failed fetches, and keeps policies across a restart. A fake fetcher and a Clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.mtasts import STSPolicies
from rail.delivery.stscache import RECHECK, CachedPolicy
from rail.delivery.stsfetch import Fetched
from rail.delivery.stspolicy import parse_policy
from rail.delivery.tlsreport import TLSOutcome

T0 = 1_000_000.0
TEXT = "version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 86400\n"


class _Fetcher:
    """TXT ids and fetch results per domain; fetches wait when ``hold`` is set."""

    def __init__(self) -> None:
        self.ids: dict[str, str | None] = {}
        self.policies: dict[str, Fetched] = {}
        self.txt_lookups: list[str] = []
        self.fetches: list[str] = []
        self.held: list[Deferred[Fetched]] = []
        self.hold = False

    def policy_id(self, domain: str) -> Deferred[str | None]:
        self.txt_lookups.append(domain)
        return succeed(self.ids.get(domain))

    def fetch(self, domain: str) -> Deferred[Fetched]:
        self.fetches.append(domain)
        if self.hold:
            d: Deferred[Fetched] = Deferred()
            self.held.append(d)
            return d
        return succeed(
            self.policies.get(domain, Fetched(result="sts-policy-fetch-error", reason="HTTP 404"))
        )


class _Sink:
    def __init__(self) -> None:
        self.outcomes: list[TLSOutcome] = []

    def record(self, outcome: TLSOutcome) -> None:
        self.outcomes.append(outcome)


def _inline(f: Any) -> Deferred[Any]:
    return maybeDeferred(f)


class PolicyStoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.fetcher = _Fetcher()
        self.sink = _Sink()
        self.fetcher.ids["a.example"] = "id1"
        self.fetcher.policies["a.example"] = Fetched(policy=parse_policy(TEXT))

    def store(self, path: Path | None = None) -> STSPolicies:
        return STSPolicies(
            self.clock,
            self.fetcher,
            outcomes=self.sink,
            path=path,
            run_in_thread=_inline if path else None,
        )

    def test_first_lookup_then_memory(self) -> None:
        """The first delivery waits for TXT and fetch; later ones are answered from
        memory with no lookup at all."""
        store = self.store()
        policy = self.successResultOf(store.policy("a.example"))
        assert policy is not None
        self.assertEqual((policy.policy.mode, policy.policy_id), ("enforce", "id1"))
        for _ in range(3):
            self.assertIs(self.successResultOf(store.policy("a.example")), policy)
        self.assertEqual(self.fetcher.txt_lookups, ["a.example"])
        self.assertEqual(self.fetcher.fetches, ["a.example"])

    def test_no_policy_cached(self) -> None:
        """A domain without a TXT record: None, and no new lookup for RECHECK seconds."""
        store = self.store()
        self.assertIsNone(self.successResultOf(store.policy("b.example")))
        self.clock.advance(RECHECK - 1)
        self.assertIsNone(self.successResultOf(store.policy("b.example")))
        self.assertEqual(self.fetcher.txt_lookups, ["b.example"])
        self.clock.advance(1)
        store.policy("b.example")
        self.assertEqual(self.fetcher.txt_lookups, ["b.example", "b.example"])

    def test_concurrent_lookups_shared(self) -> None:
        """Deliveries that ask while the first fetch runs share it."""
        self.fetcher.hold = True
        store = self.store()
        waiting = [store.policy("a.example") for _ in range(3)]
        self.assertEqual(self.fetcher.fetches, ["a.example"])
        self.fetcher.held[0].callback(Fetched(policy=parse_policy(TEXT)))
        results = [self.successResultOf(d) for d in waiting]
        self.assertTrue(all(r is results[0] and r is not None for r in results))

    def test_stale_refreshed_in_background(self) -> None:
        """After RECHECK the cached policy is answered at once while the TXT record is
        checked; a new id fetches the new policy, which later deliveries get."""
        store = self.store()
        first = self.successResultOf(store.policy("a.example"))
        self.clock.advance(RECHECK)
        self.fetcher.ids["a.example"] = "id2"
        self.fetcher.hold = True
        self.assertIs(self.successResultOf(store.policy("a.example")), first)
        self.assertEqual(self.fetcher.fetches, ["a.example", "a.example"])
        self.fetcher.held[0].callback(Fetched(policy=parse_policy(TEXT.replace("86400", "600"))))
        second = self.successResultOf(store.policy("a.example"))
        assert second is not None
        self.assertEqual((second.policy_id, second.policy.max_age), ("id2", 600))

    def test_failed_fetch_keeps_cache_and_reports(self) -> None:
        """A new id whose fetch fails: the cached policy stays in use (RFC 8461 §5.1)
        and the failure is reported as a TLS outcome."""
        store = self.store()
        first = self.successResultOf(store.policy("a.example"))
        self.clock.advance(RECHECK)
        self.fetcher.ids["a.example"] = "id2"
        self.fetcher.policies["a.example"] = Fetched(result="sts-webpki-invalid", reason="bad cert")
        store.policy("a.example")
        kept = self.successResultOf(store.policy("a.example"))
        assert kept is not None and first is not None
        self.assertEqual((kept.policy_id, kept.fetched_at), ("id1", first.fetched_at))
        [outcome] = self.sink.outcomes
        self.assertEqual(
            (outcome.policy_domain, outcome.policy_type, outcome.result, outcome.failure_reason),
            ("a.example", "sts", "sts-webpki-invalid", "bad cert"),
        )

    def test_failed_fetch_without_cache(self) -> None:
        """A first fetch that fails: no policy (delivered as opportunistic), reported."""
        self.fetcher.ids["c.example"] = "x"
        store = self.store()
        self.assertIsNone(self.successResultOf(store.policy("c.example")))
        self.assertEqual([o.result for o in self.sink.outcomes], ["sts-policy-fetch-error"])

    def test_expired_policy_looked_up_again(self) -> None:
        """Once max_age has passed the policy is not used without a new lookup."""
        store = self.store()
        self.successResultOf(store.policy("a.example"))
        self.clock.advance(86400)
        self.fetcher.ids["a.example"] = None
        self.assertIsNone(self.successResultOf(store.policy("a.example")))

    def test_kept_across_restart(self) -> None:
        """A fetched policy is written after the save delay and read by a new store,
        which answers with it at once (and re-checks the TXT record in the background)."""
        path = Path(self.mktemp()) / "mta-sts" / "policies.json"
        store = self.store(path)
        self.successResultOf(store.start())
        self.successResultOf(store.policy("a.example"))
        self.assertFalse(path.exists())
        self.clock.advance(10)
        self.assertTrue(path.exists())
        self.successResultOf(store.stop())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.fetcher.hold = True
        again = self.store(path)
        self.successResultOf(again.start())
        loaded = self.successResultOf(again.policy("a.example"))
        assert loaded is not None
        self.assertEqual(loaded.policy_id, "id1")
        self.assertIsInstance(loaded, CachedPolicy)

    def test_prune(self) -> None:
        """Beyond max_entries, domains without a policy are forgotten first."""
        store = STSPolicies(self.clock, self.fetcher, max_entries=3)
        self.successResultOf(store.policy("a.example"))
        for name in ("n1.example", "n2.example", "n3.example"):
            store.policy(name)
        self.assertEqual(store.cached, 1)
        self.assertIsNotNone(self.successResultOf(store.policy("a.example")))
        self.assertEqual(self.fetcher.fetches, ["a.example"])
