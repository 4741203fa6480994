"""Forward targets that come back to Rail, and the route configuration."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rail.config import ConfigError
from rail.config.parse import parse_config
from rail.forward.loops import forward_problems
from rail.inbound.recipients import Route, recipient_table, route_recipient

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _config(routes: list[dict[str, Any]]) -> Any:
    return parse_config(
        {
            "hostname": "mx.rail.test",
            "local_domains": ["rail.test", "other.test"],
            "tls": {"self_signed": True},
            "inbound": {"routes": routes},
        },
        Path("/tmp"),
    )


def _problems(routes: list[dict[str, Any]]) -> list[str]:
    return forward_problems(recipient_table(_config(routes), (), NOW))


class LoopTests(SynchronousTestCase):
    def test_outside_targets_are_fine(self) -> None:
        """Forwarding to mailboxes elsewhere is what forwarding is for."""
        self.assertEqual(
            _problems([{"match": "*@rail.test", "forward": ["a@mailbox.example"]}]), []
        )

    def test_target_routing_back(self) -> None:
        """A target that a route takes is a loop, named by its path."""
        problems = _problems(
            [
                {"match": "alias@rail.test", "forward": ["a@mailbox.example", "x@other.test"]},
                {"match": "*@other.test", "forward": ["alias@rail.test"]},
            ]
        )
        self.assertEqual(
            problems,
            [
                "inbound.routes[0].forward[1]: x@other.test routes back to Rail"
                " (a forwarding loop)",
                "inbound.routes[1].forward[0]: alias@rail.test routes back to Rail"
                " (a forwarding loop)",
            ],
        )

    def test_self_loop_by_regex(self) -> None:
        """A route whose own pattern takes its target loops on itself."""
        problems = _problems([{"match": "regex:.*@rail\\.test", "forward": ["b@rail.test"]}])
        self.assertEqual(len(problems), 1)
        self.assertIn("routes back to Rail", problems[0])

    def test_local_target_without_route(self) -> None:
        """A target in a local domain that no route takes is refused too."""
        problems = _problems([{"match": "a@rail.test", "forward": ["nobody@other.test"]}])
        self.assertEqual(
            problems,
            [
                "inbound.routes[0].forward[0]: nobody@other.test is in Rail's local domain"
                " other.test but no route takes it; forward only to mailboxes elsewhere"
            ],
        )


class RouteConfigTests(SynchronousTestCase):
    def test_forward_only_route(self) -> None:
        """A route may forward without a client; it routes with its index."""
        config = _config([{"match": "a@rail.test", "forward": ["x@mailbox.example"]}])
        [route] = config.inbound.routes
        self.assertIsNone(route.client)
        self.assertEqual(route.forward, ("x@mailbox.example",))
        decision = route_recipient(recipient_table(config, (), NOW), "a@rail.test")
        self.assertEqual(decision, Route(None, None, ("x@mailbox.example",), 0))

    def test_needs_client_or_forward(self) -> None:
        """A route with neither a client nor forward addresses is refused."""
        with self.assertRaises(ConfigError) as caught:
            _config([{"match": "a@rail.test"}])
        self.assertEqual(
            [str(p) for p in caught.exception.problems],
            ["inbound.routes[0]: client or forward is required: where this route's mail goes"],
        )

    def test_limits_and_bad_addresses(self) -> None:
        """Rate limits need forward addresses; forward addresses must be addresses."""
        with self.assertRaises(ConfigError) as caught:
            _config(
                [
                    {"match": "a@rail.test", "client": "app", "forward_per_minute": 5},
                    {"match": "b@rail.test", "forward": ["not an address"]},
                ]
            )
        problems = [str(p) for p in caught.exception.problems]
        self.assertEqual(len(problems), 2)
        self.assertIn("inbound.routes[0]: forward_per_minute without forward", problems[0])
        self.assertIn("inbound.routes[1].forward[0]: expected an email address", problems[1])
