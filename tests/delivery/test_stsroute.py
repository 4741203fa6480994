"""The routing step under MTA-STS: each host's requirement, enforce's host filter, and
the MX and policy lookups combined."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from rail.delivery.outcome import Reply
from rail.delivery.resolve import Route, RouteError, RouteHost
from rail.delivery.stscache import CachedPolicy
from rail.delivery.stspolicy import STSPolicy
from rail.delivery.stsroute import apply_policy, policy_domain, policy_route
from rail.delivery.tlsreport import TLSOutcome

ROUTE = Route(
    (
        RouteHost("mx1.dest.example", ("192.0.2.1",)),
        RouteHost("backup.other.example", ("192.0.2.2",)),
    )
)


def _cached(mode: str, *mx: str) -> CachedPolicy:
    policy = STSPolicy(mode=mode, max_age=86400, mx=mx, text=f"version: STSv1\nmode: {mode}\n")  # type: ignore[arg-type]
    return CachedPolicy(policy, "id7", 0.0, 0.0)


class _Sink:
    def __init__(self) -> None:
        self.outcomes: list[TLSOutcome] = []

    def record(self, outcome: TLSOutcome) -> None:
        self.outcomes.append(outcome)


class ApplyTests(SynchronousTestCase):
    def test_no_policy(self) -> None:
        """Without a policy every host is kept, opportunistic, for the domain."""
        route = apply_policy(ROUTE, "dest.example", None)
        self.assertEqual([h.tls.mode for h in route.hosts], ["opportunistic"] * 2)
        self.assertEqual({h.tls.policy_domain for h in route.hosts}, {"dest.example"})

    def test_enforce_filters_and_reports(self) -> None:
        """enforce keeps only listed hosts (each sts-enforce with the policy id) and
        reports the dropped one."""
        sink = _Sink()
        route = apply_policy(
            ROUTE, "dest.example", _cached("enforce", "*.dest.example"), "/ca.pem", sink
        )
        [host] = route.hosts
        self.assertEqual(host.name, "mx1.dest.example")
        self.assertEqual(
            (host.tls.mode, host.tls.policy_id, host.tls.ca_file), ("sts-enforce", "id7", "/ca.pem")
        )
        [outcome] = sink.outcomes
        self.assertEqual(
            (outcome.mx_host, outcome.result), ("backup.other.example", "validation-failure")
        )

    def test_enforce_none_listed(self) -> None:
        """enforce with no host listed: RouteError 451 4.7.5 naming MTA-STS and the hosts."""
        with self.assertRaises(RouteError) as caught:
            apply_policy(ROUTE, "dest.example", _cached("enforce", "mx.elsewhere.example"))
        reply = caught.exception.reply
        self.assertEqual((reply.code, reply.enhanced, reply.remote), (451, "4.7.5", False))
        self.assertEqual(
            reply.text,
            "MTA-STS policy of dest.example (enforce) lists none of its MX hosts"
            " (mx1.dest.example, backup.other.example)",
        )

    def test_testing_keeps_every_host(self) -> None:
        """testing keeps unlisted hosts (the connection reports them)."""
        route = apply_policy(ROUTE, "dest.example", _cached("testing", "mx1.dest.example"))
        self.assertEqual([h.tls.mode for h in route.hosts], ["sts-testing"] * 2)

    def test_policy_domain(self) -> None:
        """Lower-case A-label; None for address literals and names IDNA refuses."""
        self.assertEqual(policy_domain("Dest.Example."), "dest.example")
        self.assertEqual(policy_domain("bücher.example"), "xn--bcher-kva.example")
        self.assertIsNone(policy_domain("[192.0.2.1]"))
        self.assertIsNone(policy_domain("a\u200db.example"))


class CombinedTests(SynchronousTestCase):
    def test_route_and_policy(self) -> None:
        """Both lookups' results make the route, whichever answers first."""
        routing: Deferred[Route] = Deferred()
        result = Deferred.fromCoroutine(
            policy_route(routing, succeed(_cached("enforce", "mx1.dest.example")), "dest.example")
        )
        self.assertNoResult(result)
        routing.callback(ROUTE)
        self.assertEqual([h.name for h in self.successResultOf(result).hosts], ["mx1.dest.example"])

    def test_route_error_passes(self) -> None:
        """A routing failure is the result (the policy does not matter)."""
        error = RouteError(Reply(550, "5.1.2", "no such domain", remote=False))
        result = Deferred.fromCoroutine(policy_route(fail(error), succeed(None), "dest.example"))
        self.assertIs(self.failureResultOf(result, RouteError).value, error)
