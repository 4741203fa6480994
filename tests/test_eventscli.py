"""``rail certs issue --events`` and ``rail clients events``: exit codes, output, and what
the registry holds afterwards."""

from __future__ import annotations

import json

from rail.pki.registry import Registry, registry_path
from tests.test_cli import _CLITestCase


class _EventsCLI(_CLITestCase):
    def stored(self, name: str = "myapp") -> tuple[tuple[str, ...], str | None]:
        with Registry.open(registry_path(self.dir / "data")) as registry:
            settings = registry.events_of(name)
        return settings.types, settings.url


class IssueWithEventsTests(_EventsCLI):
    def test_issue_with_events(self) -> None:
        """--events (repeatable, comma-separated) and --events-url are recorded with the
        certificate and printed."""
        code, out, err = self.issue(
            "myapp",
            "--events",
            "message.bounced,message.delivered",
            "--events",
            "inbound.failed",
            "--events-url",
            "https://myapp.com/hooks/events",
        )
        self.assertEqual(code, 0, err)
        self.assertIn(
            "  events   message.delivered, message.bounced, inbound.failed ->"
            " https://myapp.com/hooks/events",
            out,
        )
        self.assertEqual(
            self.stored(),
            (
                ("message.delivered", "message.bounced", "inbound.failed"),
                "https://myapp.com/hooks/events",
            ),
        )

    def test_unknown_type_is_usage_error(self) -> None:
        """An unknown type exits 2 naming it, before anything is issued."""
        code, out, err = self.issue("myapp", "--events", "message.delivered,message.opened")
        self.assertEqual(code, 2)
        self.assertIn("--events: unknown event type 'message.opened'", err)
        self.assertFalse((self.dir / "myapp.crt").exists())

    def test_events_url_alone_or_admin(self) -> None:
        """--events-url without --events, and --events on an admin certificate, are
        usage errors."""
        code, _, err = self.issue("myapp", "--events-url", "https://x.example/e")
        self.assertEqual(code, 2)
        self.assertIn("--events-url: give --events too", err)
        code, _, err = self.rail(
            "certs", "issue", "--config", str(self.config), "--name", "ops", "--admin",
            "--out", str(self.dir), "--events", "all",
        )  # fmt: skip
        self.assertEqual(code, 2)
        self.assertIn("admin certificate", err)


class ClientsEventsTests(_EventsCLI):
    def events(self, *args: str) -> tuple[int, str, str]:
        return self.rail("clients", "events", "--config", str(self.config), *args)

    def test_show_and_set(self) -> None:
        """Without options the settings are shown; --events replaces the types, keeping
        the URL; --no-events-url goes back to the certificate's webhook; none clears."""
        self.assertEqual(self.issue("myapp")[0], 0)
        self.assertEqual(self.events("myapp"), (0, "myapp: none\n", ""))
        code, out, err = self.events(
            "myapp", "--events", "all", "--events-url", "https://myapp.com/events"
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(
            out,
            "myapp: all -> https://myapp.com/events\na running Rail applies it within a second\n",
        )
        self.events("myapp", "--events", "message.bounced")
        self.assertEqual(self.stored(), (("message.bounced",), "https://myapp.com/events"))
        self.events("myapp", "--no-events-url")
        self.assertEqual(self.stored(), (("message.bounced",), None))
        code, out, _ = self.events("myapp", "--json")
        self.assertEqual(
            json.loads(out), {"client": "myapp", "types": ["message.bounced"], "url": None}
        )
        self.events("myapp", "--events", "none")
        self.assertEqual(self.stored(), ((), None))

    def test_refusals(self) -> None:
        """An unknown type or a bad URL exits 2 and changes nothing; an unknown client
        exits 1; each names the item."""
        self.assertEqual(self.issue("myapp")[0], 0)
        self.events("myapp", "--events", "message.bounced")
        code, _, err = self.events("myapp", "--events", "message.bouncd")
        self.assertEqual(code, 2)
        self.assertIn("'message.bouncd'", err)
        code, _, err = self.events("myapp", "--events-url", "ftp://x.example/e")
        self.assertEqual(code, 2)
        self.assertIn("--events-url 'ftp://x.example/e'", err)
        self.assertEqual(self.stored(), (("message.bounced",), None))
        code, _, err = self.events("ghost", "--events", "all")
        self.assertEqual(code, 1)
        self.assertIn("'ghost': no client certificate has this name", err)
