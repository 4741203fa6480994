"""Port-25 recipient routing: local domains, relay refusals, exact addresses, routes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from rail.config import Config, parse_config
from rail.inbound.model import WebhookTarget
from rail.inbound.recipients import (
    RELAY_DENIED,
    USER_UNKNOWN,
    RecipientTable,
    Refusal,
    Route,
    recipient_table,
    route_recipient,
    routing_problems,
    webhook_targets,
)
from rail.pki.registry import CertificateRecord

NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)


def make_config(**inbound: Any) -> Config:
    raw: dict[str, Any] = {
        "hostname": "mx.rail.test",
        "local_domains": ["rail.test", "other.test"],
        "tls": {"self_signed": True},
        "inbound": inbound,
    }
    return parse_config(raw, Path("/nonexistent"))


_serial = iter(range(1, 10_000))


def record(
    name: str,
    senders: Sequence[str],
    webhook: str | None = None,
    *,
    issued: datetime = NOW - timedelta(days=1),
    revoked: bool = False,
    expired: bool = False,
) -> CertificateRecord:
    return CertificateRecord(
        serial=next(_serial),
        name=name,
        senders=tuple(senders),
        webhook=webhook if webhook is not None else f"https://{name}.example/hook",
        key_type="ed25519",
        not_before=issued,
        not_after=NOW - timedelta(seconds=1) if expired else NOW + timedelta(days=30),
        issued_at=issued,
        revoked_at=NOW if revoked else None,
        fingerprint_sha256=f"{next(_serial):064x}",
        pem=b"",
    )


RECORDS = [
    record("app", ["hello@rail.test", "Support@Cert.Example"]),
    record("billing", ["invoices@rail.test"]),
    record("catchall", ["noreply@catchall.test"]),
]
ROUTES = [
    {"match": "sales@rail.test", "client": "billing"},
    {"match": "*@rail.test", "client": "catchall"},
    {"match": r"regex:ticket-\d+@other\.test", "client": "app"},
]


def table(records: Sequence[CertificateRecord] = RECORDS, **inbound: Any) -> RecipientTable:
    inbound.setdefault("routes", ROUTES)
    return recipient_table(make_config(**inbound), records, NOW)


def client_of(decision: Route | Refusal) -> str | None:
    return decision.client if isinstance(decision, Route) else None


class TableTests(SynchronousTestCase):
    def test_local_domains(self) -> None:
        """Local domains are the configured ones plus valid certificates' SAN domains,
        lower-cased; revoked and expired certificates add none."""
        records = [
            *RECORDS,
            record("gone", ["x@revoked.test"], revoked=True),
            record("old", ["x@expired.test"], expired=True),
        ]
        self.assertEqual(
            table(records).local_domains,
            frozenset({"rail.test", "other.test", "cert.example", "catchall.test"}),
        )

    def test_exact_addresses_and_webhooks(self) -> None:
        """SAN addresses map to their client (domain lower-cased, local part kept); each
        client's webhook is that of its latest valid certificate."""
        newer = record(
            "app", ["new@rail.test"], "https://app.example/v2", issued=NOW - timedelta(hours=1)
        )
        result = table([*RECORDS, newer])
        self.assertEqual(result.addresses[("Support", "cert.example")], "app")
        self.assertEqual(result.addresses[("new", "rail.test")], "app")
        self.assertEqual(result.webhooks["app"], "https://app.example/v2")

    def test_records_without_webhook(self) -> None:
        """A certificate without a webhook is for sending only: its addresses are not
        exact routes, but its domains are still local."""
        nowebhook = attrs.evolve(record("s", ["out@send.test"]), webhook=None)
        result = table([nowebhook])
        self.assertIn("send.test", result.local_domains)
        self.assertEqual(result.addresses, {})
        self.assertEqual(result.webhooks, {})


class SharedAddressTests(SynchronousTestCase):
    """An address in valid certificates of two clients (--allow-shared-address, or a
    registry from before issuance refused it)."""

    def test_older_certificate_keeps_the_address(self) -> None:
        """Mail goes to the client whose certificate was issued first, whatever order
        the records come in; routing_problems names the conflict and the owner."""
        older = record("app", ["app@rail.test"], issued=NOW - timedelta(days=2))
        newer = record("two", ["app@rail.test", "two@rail.test"], issued=NOW - timedelta(days=1))
        for records in ([older, newer], [newer, older]):
            result = table(records, routes=[])
            self.assertEqual(client_of(route_recipient(result, "app@rail.test")), "app")
            self.assertEqual(client_of(route_recipient(result, "two@rail.test")), "two")
            [problem] = [p for p in routing_problems(result) if "app@rail.test" in p]
            self.assertIn("more than one client", problem)
            self.assertIn(f"'app' (serial {older.serial:x}", problem)
            self.assertIn(f"'two' (serial {newer.serial:x}", problem)
            self.assertTrue(
                problem.endswith("it belongs to 'app', issued first: its mail goes to 'app'")
            )

    def test_newer_takes_over_when_older_revoked(self) -> None:
        """Once the older certificate is revoked the address is the other client's, and
        nothing is reported."""
        older = record("app", ["app@rail.test"], issued=NOW - timedelta(days=2), revoked=True)
        newer = record("two", ["app@rail.test"], issued=NOW - timedelta(days=1))
        result = table([older, newer], routes=[])
        self.assertEqual(client_of(route_recipient(result, "app@rail.test")), "two")
        self.assertEqual(result.conflicts, ())

    def test_owner_without_webhook(self) -> None:
        """The owner cannot take mail: the address is not given to the later client; it
        follows the routes, and the problem says so."""
        older = attrs.evolve(
            record("sender", ["app@rail.test"], issued=NOW - timedelta(days=2)), webhook=None
        )
        newer = record("two", ["app@rail.test"], issued=NOW - timedelta(days=1))
        result = table([*RECORDS, older, newer])
        self.assertEqual(client_of(route_recipient(result, "app@rail.test")), "catchall")
        self.assertTrue(
            any("'sender' has no webhook, so its mail follows the routes" in p
                for p in routing_problems(result))
        )  # fmt: skip

    def test_rotation_is_not_a_conflict(self) -> None:
        """Two valid certificates of one name listing the same address are one client:
        no conflict, mail to that client at its newest webhook."""
        old = record(
            "app", ["app@rail.test"], "https://app.example/v1", issued=NOW - timedelta(days=2)
        )
        new = record(
            "app", ["app@rail.test"], "https://app.example/v2", issued=NOW - timedelta(days=1)
        )
        result = table([old, new], routes=[])
        self.assertEqual(result.conflicts, ())
        self.assertEqual(
            route_recipient(result, "app@rail.test"), Route("app", "https://app.example/v2")
        )


class RouteTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.table = table()

    def route(self, address: str) -> Route | Refusal:
        return route_recipient(self.table, address)

    def test_routing_table(self) -> None:
        """Exact SAN first, then routes in order; first match wins."""
        cases = {
            "hello@rail.test": "app",  # exact SAN beats *@rail.test
            "hello@RAIL.TEST": "app",  # domain in any case
            "invoices@rail.test": "billing",
            "sales@rail.test": "billing",  # local@domain route before *@domain
            "sales@Rail.Test": "billing",
            "anyone@rail.test": "catchall",
            "Support@cert.example": "app",
            "ticket-42@other.test": "app",  # regex route
            "ticket-42@OTHER.test": "app",  # the regex sees the lower-cased domain
            "noreply@catchall.test": "catchall",
        }
        for address, client in cases.items():
            with self.subTest(address=address):
                self.assertEqual(client_of(self.route(address)), client)

    def test_route_carries_url(self) -> None:
        """A route names the client's webhook URL."""
        self.assertEqual(self.route("hello@rail.test"), Route("app", "https://app.example/hook"))

    def test_unknown_local_user(self) -> None:
        """A local domain without a matching route: 550 5.1.1."""
        cases = [
            "support@cert.example",  # SAN local parts are exact
            "ticket-x@other.test",
            "nobody@catchall.test",
        ]
        for address in cases:
            with self.subTest(address=address):
                decision = self.route(address)
                assert isinstance(decision, Refusal)
                self.assertEqual(decision.reject, USER_UNKNOWN)

    def test_relay_refused(self) -> None:
        """Non-local domains and every relay trick: 550 5.7.1 Relay access denied."""
        cases = {
            "user@external.example": "relay",
            "user@rail.test.external.example": "relay",
            "user%external.example@rail.test": "relay-syntax",
            "external.example!user@rail.test": "relay-syntax",
            '"user@external.example"@rail.test': "relay-syntax",
            '"user%ext"@rail.test': "relay-syntax",
            "user@[127.0.0.1]": "relay-syntax",
            "user@[IPv6:::1]": "relay-syntax",
            "postmaster@[127.0.0.1]": "relay-syntax",
            "postmaster@external.example": "relay",
            "user@rail.test@external.example": "relay-syntax",
            "no-at-sign": "relay-syntax",
        }
        for address, reason in cases.items():
            with self.subTest(address=address):
                decision = self.route(address)
                assert isinstance(decision, Refusal)
                self.assertEqual(decision.reject, RELAY_DENIED)
                self.assertEqual(decision.reason, reason)

    def test_relay_hack_even_with_catch_all(self) -> None:
        """A regex route that would match never makes a relay hack deliverable."""
        greedy = table(routes=[{"match": "regex:.*", "client": "app"}])
        for address in ("a%b@rail.test", "b!a@rail.test", '"a@b"@rail.test', "a@[10.0.0.1]"):
            with self.subTest(address=address):
                decision = route_recipient(greedy, address)
                assert isinstance(decision, Refusal)
                self.assertEqual(decision.reject, RELAY_DENIED)

    def test_internationalized_domain(self) -> None:
        """A U-label domain is compared as its A-label."""
        idn = recipient_table(
            make_config(routes=[{"match": "*@xn--bcher-kva.test", "client": "app"}]),
            [*RECORDS, record("x", ["a@xn--bcher-kva.test"])],
            NOW,
        )
        self.assertEqual(client_of(route_recipient(idn, "jo@bücher.test")), "app")

    def test_route_to_client_without_certificate(self) -> None:
        """A matching route whose client has no valid certificate with a webhook refuses
        550 5.1.1 (the first match decides: no fall-through to later routes)."""
        dead = table(
            [*RECORDS[:1], record("billing", ["invoices@rail.test"], revoked=True)],
        )
        decision = route_recipient(dead, "sales@rail.test")
        self.assertEqual(decision, Refusal(USER_UNKNOWN, "no-webhook", "billing"))
        self.assertIn("inbound.routes[0]: client 'billing'", routing_problems(dead)[0])


class PostmasterTests(SynchronousTestCase):
    def test_postmaster_client(self) -> None:
        """postmaster@ every local domain (and Rail's host name), in any case, goes to
        inbound.postmaster, before exact addresses and routes."""
        result = table(postmaster="billing")
        for domain in [*sorted(result.local_domains), "mx.rail.test"]:
            for local in ("postmaster", "PostMaster", "POSTMASTER"):
                with self.subTest(address=f"{local}@{domain}"):
                    self.assertEqual(
                        client_of(route_recipient(result, f"{local}@{domain}")), "billing"
                    )
        self.assertEqual(routing_problems(result), [])

    def test_postmaster_follows_routes(self) -> None:
        """Without inbound.postmaster, postmaster mail follows the routes (matched as the
        lower-case ``postmaster``); a domain where nothing catches it is refused 5.1.1 and
        reported at start-up."""
        result = table()
        self.assertEqual(client_of(route_recipient(result, "POSTMASTER@rail.test")), "catchall")
        decision = route_recipient(result, "postmaster@other.test")
        assert isinstance(decision, Refusal)
        self.assertEqual(decision.reject, USER_UNKNOWN)
        [problem] = routing_problems(result)
        self.assertEqual(
            problem,
            "no route for postmaster@ in catchall.test, cert.example, mx.rail.test, other.test;"
            " set inbound.postmaster",
        )

    def test_postmaster_client_without_webhook(self) -> None:
        """A postmaster client that cannot take mail falls back to the routes."""
        result = table(postmaster="ghost")
        self.assertEqual(client_of(route_recipient(result, "postmaster@rail.test")), "catchall")
        self.assertTrue(any("inbound.postmaster" in p for p in routing_problems(result)))

    def test_postmaster_host_name_only(self) -> None:
        """Rail's host name accepts postmaster (RFC 5321 ``<postmaster>``) and nothing
        else unless it is a local domain."""
        result = table(postmaster="billing")
        decision = route_recipient(result, "root@mx.rail.test")
        assert isinstance(decision, Refusal)
        self.assertEqual(decision.reject, RELAY_DENIED)


class TargetTests(SynchronousTestCase):
    def test_one_target_per_client(self) -> None:
        """Recipients are grouped per client, in RCPT order, clients in order of first
        appearance."""
        a = Route("a", "https://a/")
        b = Route("b", "https://b/")
        targets = webhook_targets([("1@x", b), ("2@x", a), ("3@x", b)])
        self.assertEqual(
            targets,
            (
                WebhookTarget("b", "https://b/", ("1@x", "3@x")),
                WebhookTarget("a", "https://a/", ("2@x",)),
            ),
        )
