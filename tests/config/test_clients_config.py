"""``clients_default`` and ``clients``: per-client limits and sandbox, read strictly."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from rail.config import ConfigError, parse_config
from rail.config.clients import ClientPolicies
from rail.config.schema import ClientLimits
from rail.reload import restart_needed


class ClientsConfigTests(SynchronousTestCase):
    def parse(self, **extra: object) -> ClientPolicies:
        data = {"hostname": "mail.example.com", "tls": {"self_signed": True}, **extra}
        return ClientPolicies.from_config(parse_config(data, Path(".")))

    def test_defaults_are_unlimited(self) -> None:
        """Without ``clients`` settings, nobody is limited nor sandboxed."""
        policies = self.parse()
        self.assertEqual(policies.limits("app"), ClientLimits())
        self.assertFalse(policies.sandbox("app"))

    def test_client_overrides_default_key_by_key(self) -> None:
        """A client's own keys replace the default's, null lifting a limit; the other keys
        and clients keep the default; the sandbox flag follows the same rule."""
        policies = self.parse(
            clients_default={"limits": {"messages_per_day": 100, "messages_per_hour": 50}},
            clients={
                "app": {"limits": {"messages_per_minute": 5, "messages_per_day": None}},
                "test-app": {"sandbox": True},
            },
        )
        self.assertEqual(
            policies.limits("app"),
            ClientLimits(messages_per_minute=5, messages_per_hour=50, messages_per_day=None),
        )
        self.assertEqual(
            policies.limits("other"), ClientLimits(messages_per_hour=50, messages_per_day=100)
        )
        self.assertTrue(policies.sandbox("test-app"))
        self.assertFalse(policies.sandbox("app"))
        everyone = self.parse(
            clients_default={"sandbox": True}, clients={"real": {"sandbox": False}}
        )
        self.assertTrue(everyone.sandbox("any"))
        self.assertFalse(everyone.sandbox("real"))

    def test_errors_are_path_qualified(self) -> None:
        """Every problem under ``clients`` and ``clients_default`` is reported with its
        path, all at once."""
        error = self.assertRaises(
            ConfigError,
            self.parse,
            clients_default={"limits": {"messages_per_dya": 1}},
            clients={
                "bad name": {},
                "app": {"limits": {"messages_per_minute": -1}, "sandbox": "yes", "x": 1},
                "other": [],
            },
        )
        self.assertEqual(
            [str(problem) for problem in error.problems],
            [
                "clients_default.limits.messages_per_dya: unknown key"
                " (did you mean 'messages_per_day'?)",
                "clients.bad name: expected a client name of letters, digits, '.', '_' and '-',"
                " got 'bad name'",
                "clients.app.limits.messages_per_minute: expected a number from 0 to"
                " 1000000000, got -1",
                "clients.app.sandbox: expected true or false, got string",
                "clients.app.x: unknown key",
                "clients.other: expected a mapping, got list",
            ],
        )

    def test_reload_applies_without_restart(self) -> None:
        """A change of ``clients`` or ``clients_default`` needs no restart (SIGHUP
        applies it)."""
        base = {"hostname": "mail.example.com", "tls": {"self_signed": True}}
        old = parse_config(base, Path("."))
        new = parse_config(
            {**base, "clients": {"a": {"sandbox": True}}, "clients_default": {"limits": {}}},
            Path("."),
        )
        self.assertEqual(restart_needed(old, new), [])
