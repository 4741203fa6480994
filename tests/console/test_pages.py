"""The console's pages as plain values in, escaped HTML out."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.template import flattenString

from rail.config.clients import ClientPolicies
from rail.config.schema import ClientLimits
from rail.console.clientpages import certificate_state, clients_page
from rail.console.overview import overview_page
from rail.console.reads import _quarantined
from rail.delivery.stats import DeliveryStats
from rail.pki.clientevents import ClientEvents
from rail.pki.registry import CertificateRecord
from rail.quarantine import Quarantines
from rail.store.model import Quarantined

_NOW = datetime(2026, 12, 4, tzinfo=UTC)


def _record(name: str, days: int, role: str = "client", revoked: bool = False) -> CertificateRecord:
    return CertificateRecord(
        serial=0xABC + days,
        name=name,
        senders=(f"{name}@rail.test",),
        webhook=None,
        key_type="ecdsa-p256",
        not_before=_NOW - timedelta(days=1),
        not_after=_NOW + timedelta(days=days),
        issued_at=_NOW - timedelta(days=1),
        revoked_at=_NOW if revoked else None,
        fingerprint_sha256="00",
        pem=b"",
        role=role,  # type: ignore[arg-type]
    )


def _html(tag: object) -> bytes:
    out: list[bytes] = []
    flattenString(None, tag).addCallback(out.append)
    return out[0]


class ClientsPageTests(SynchronousTestCase):
    def test_states_limits_and_sandbox(self) -> None:
        """Each certificate shows its state (valid, expiring within 30 days, expired,
        revoked), a client's limits, sandbox flag and event subscription (none for an
        admin), and a Revoke link unless already revoked."""
        now = _NOW.timestamp()
        records = [
            _record("shop", 90),
            _record("<soon>", 10),
            _record("old", -1),
            _record("gone", 90, revoked=True),
            _record("ops", 90, role="admin"),
        ]
        self.assertEqual(
            [certificate_state(r, now) for r in records],
            ["valid", "expiring", "expired", "revoked", "valid"],
        )
        policies = ClientPolicies(
            ClientLimits(messages_per_minute=10),
            False,
            {"shop": ClientLimits(messages_per_hour=5, recipients_per_day=100)},
            {"shop": True},
        )
        events = {"shop": ClientEvents("shop", ("message.delivered",), None)}
        html = _html(clients_page(now, records, "", "", None, None, True, policies, events))
        self.assertIn(b"<td>shop</td><td>client</td><td>b16</td><td>valid</td>", html)
        self.assertIn(
            b"<td>5 messages/h, 100 recipients/day</td><td>yes</td>"
            b"<td>message.delivered to the webhook URL</td>",
            html,
        )
        self.assertIn(b"<td>10 messages/min</td><td>no</td><td>none</td>", html)
        self.assertIn(b"<td>&lt;soon&gt;</td>", html)
        self.assertIn(b"<td>10 messages/min</td><td>no</td>", html)
        self.assertIn(b"<td>ops</td><td>admin</td>", html)
        self.assertEqual(html.count(b">Revoke</a>"), 4)


class QuarantinedTests(SynchronousTestCase):
    def test_counted_per_queue(self) -> None:
        """The overview's quarantine figure sums rail_quarantined_total per queue."""
        stats = DeliveryStats(0.0)
        quarantines = Quarantines(registry=stats.registry)
        quarantines(Quarantined("outbound", "01J0000000000000000000000A", "corrupt", "x"))
        quarantines(Quarantined("outbound", "01J0000000000000000000000B", "timeout", "y"))
        self.assertEqual(_quarantined(stats), {"outbound": 2, "inbound": 0})


def chart_values(html: bytes, title: str) -> list[int]:
    """The bar values of the chart named ``title`` on a page (its rects' titles)."""
    start = html.index(b"<title>" + title.encode() + b"</title>")
    end = html.index(b"</svg>", start)
    return [int(v) for v in re.findall(rb"<rect [^>]*><title>(\d+)</title>", html[start:end])]


class OverviewChartTests(SynchronousTestCase):
    def test_accepted_next_to_delivered(self) -> None:
        """The overview charts messages accepted and recipients delivered side by side
        for the last hour (per minute) and day (per 15 minutes), each from its own
        series, and shows the acceptance rate."""
        stats = DeliveryStats(0.0)
        now = 1_800_000_000.0  # a minute boundary
        stats.accepted(now - 3000, 2)
        stats.accepted(now - 30, 5)
        snapshot = stats.snapshot(now, {})
        html = _html(
            overview_page(
                now,
                {},
                snapshot,
                [],
                None,
                None,
                per_minute=[(int(now) - 60, 7)],
                accepted=stats.accepted_per_minute(now),
            )
        )
        hour = chart_values(html, "Messages accepted, last hour")
        self.assertEqual((len(hour), sum(hour), hour[-2]), (60, 7, 5))
        day = chart_values(html, "Messages accepted, last 24 hours")
        self.assertEqual((len(day), sum(day)), (96, 7))
        self.assertEqual(sum(chart_values(html, "Recipients delivered, last hour")), 7)
        self.assertEqual(sum(chart_values(html, "Recipients delivered, last 24 hours")), 7)
        self.assertIn(b'<div class="charts"><figure>', html)
        self.assertIn(b"<dt>Accepted per minute (1 min / 5 min)</dt><dd>5.0 / 1.0</dd>", html)
