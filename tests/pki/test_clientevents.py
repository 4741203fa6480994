"""Clients' event settings in the registry: set, read, checked, migrated."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

from rail.events.model import EVENT_TYPES
from rail.events.subscriptions import Subscription
from rail.pki.clientevents import (
    ClientEvents,
    EventSettingsError,
    check_event_settings,
    subscriptions_from,
)
from rail.pki.issue import ClientRequest, issue_client_certificate
from rail.pki.keys import generate_private_key
from rail.pki.registry import SCHEMA_VERSION, CertificateRecord, Registry, UnknownClientError

from .helpers import DEFAULT_WEBHOOK, NOW
from .test_registry import RegistryTestCase


class SetEventsTests(RegistryTestCase):
    def test_set_and_read(self) -> None:
        """Settings are stored per client name and read back; ``all`` stays ``all``."""
        self.issue("myapp")
        self.issue("other")
        self.registry.set_events(
            "myapp", ["message.bounced", "message.delivered"], None, NOW, allow_http_loopback=False
        )
        self.registry.set_events(
            "other", ["all"], "https://other.example/events", NOW, allow_http_loopback=False
        )
        self.assertEqual(
            self.registry.events_of("myapp"),
            ClientEvents("myapp", ("message.delivered", "message.bounced"), None),
        )
        self.assertEqual(
            self.registry.all_events(),
            [
                ClientEvents("myapp", ("message.delivered", "message.bounced"), None),
                ClientEvents("other", ("all",), "https://other.example/events"),
            ],
        )

    def test_replace_and_clear(self) -> None:
        """A new setting replaces the old one; no types removes the client's row (and
        its URL)."""
        self.issue("myapp")
        self.registry.set_events(
            "myapp", ["message.bounced"], "https://a.example/e", NOW, allow_http_loopback=False
        )
        self.registry.set_events("myapp", ["all"], None, NOW, allow_http_loopback=False)
        self.assertEqual(self.registry.events_of("myapp"), ClientEvents("myapp", ("all",)))
        self.registry.set_events("myapp", [], "https://a.example/e", NOW, allow_http_loopback=False)
        self.assertEqual(self.registry.events_of("myapp"), ClientEvents("myapp"))
        self.assertEqual(self.registry.all_events(), [])

    def test_unknown_client(self) -> None:
        """A name no client certificate has is refused, for reading and writing; an
        admin certificate is not a client."""
        with self.assertRaises(UnknownClientError):
            self.registry.set_events("ghost", ["all"], None, NOW, allow_http_loopback=False)
        with self.assertRaises(UnknownClientError):
            self.registry.events_of("ghost")
        key = generate_private_key("ed25519")
        request = ClientRequest("ops", (), None, "ed25519", timedelta(days=30), admin=True)
        admin = issue_client_certificate(self.ca, request, key.public_key(), NOW)
        self.registry.add(CertificateRecord.from_certificate(admin, NOW))
        with self.assertRaises(UnknownClientError):
            self.registry.set_events("ops", ["all"], None, NOW, allow_http_loopback=False)

    def test_unknown_type_writes_nothing(self) -> None:
        """An unknown type is refused naming it (with the label given) and nothing
        changes."""
        self.issue("myapp")
        self.registry.set_events("myapp", ["message.bounced"], None, NOW, allow_http_loopback=False)
        with self.assertRaises(EventSettingsError) as caught:
            self.registry.set_events(
                "myapp", ["message.openned"], None, NOW, allow_http_loopback=False,
                labels=("types", "url"),
            )  # fmt: skip
        self.assertTrue(caught.exception.problems[0].startswith("types: unknown event type"))
        self.assertIn("'message.openned'", caught.exception.problems[0])
        self.assertEqual(self.registry.events_of("myapp").types, ("message.bounced",))


class CheckTests(RegistryTestCase):
    def test_url_rules(self) -> None:
        """The events URL follows the webhook rules: https, or http to loopback only
        where allowed."""
        self.assertEqual(
            check_event_settings(
                ["all"], "http://127.0.0.1:9/e", webhook=None, allow_http_loopback=True
            ),
            ("all",),
        )
        with self.assertRaises(EventSettingsError) as caught:
            check_event_settings(
                ["all"], "http://127.0.0.1:9/e", webhook=None, allow_http_loopback=False
            )
        self.assertTrue(caught.exception.problems[0].startswith("--events-url 'http://"))

    def test_somewhere_to_send(self) -> None:
        """Types without a URL need the certificate's webhook URL; every problem is
        reported at once."""
        self.assertEqual(
            check_event_settings(
                ["message.bounced"], None, webhook=DEFAULT_WEBHOOK, allow_http_loopback=False
            ),
            ("message.bounced",),
        )
        with self.assertRaises(EventSettingsError) as caught:
            check_event_settings(["message.bounced"], None, webhook=None, allow_http_loopback=False)
        self.assertIn("--events-url: required", caught.exception.problems[0])
        with self.assertRaises(EventSettingsError) as caught:
            check_event_settings(["bogus"], "ftp://x", webhook=None, allow_http_loopback=False)
        self.assertEqual(len(caught.exception.problems), 2)


class SubscriptionsTests(RegistryTestCase):
    def test_from_settings(self) -> None:
        """Stored settings become the store's filter: ``all`` expanded, the URL kept,
        a type this Rail does not know (a newer one wrote it) left out."""
        subscriptions = subscriptions_from(
            [
                ClientEvents("a", ("all",), None),
                ClientEvents("b", ("message.bounced", "message.opened"), "https://b/e"),
            ]
        )
        self.assertEqual(
            dict(subscriptions.by_client),
            {
                "a": Subscription(frozenset(EVENT_TYPES), None),
                "b": Subscription(frozenset({"message.bounced"}), "https://b/e"),
            },
        )


class MigrationTests(RegistryTestCase):
    def test_from_version_2(self) -> None:
        """A version 2 registry (before event settings) opens at the current version
        with its certificates and an empty settings table."""
        record = self.issue("myapp")
        self.registry.close()
        connection = sqlite3.connect(self.path)
        connection.execute("DROP TABLE client_events")
        connection.execute("PRAGMA user_version = 2")
        connection.commit()
        connection.close()
        with Registry.open(self.path) as registry:
            self.assertEqual([r.serial for r in registry.list_all()], [record.serial])
            self.assertEqual(registry.all_events(), [])
            registry.set_events("myapp", ["all"], None, NOW, allow_http_loopback=False)
        connection = sqlite3.connect(self.path)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)
