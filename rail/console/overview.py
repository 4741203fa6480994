"""The console's Overview page: queue and delivery figures, charts, disk, certificates
about to expire, deferring domains and webhook backlogs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography import x509
from twisted.web.template import Tag, tags

from rail.console.charts import bar_chart, bucket
from rail.console.clientpages import certificate_state
from rail.console.layout import date_text, definitions, document, duration_text, size_text, table
from rail.pki.registry import CertificateRecord
from rail.store.trail import BACKLOG_SCAN, DEFERRING_SCAN, Backlog, DeferringDomain

__all__ = ["overview_page"]


def overview_page(
    now: float,
    counts: dict[str, int] | None,
    snapshot: dict[str, Any] | None,
    sent: Sequence[tuple[int, int]],
    disk_free: int | None,
    certificates: Sequence[CertificateRecord] | None,
    deferring: Sequence[DeferringDomain] | None = None,
    per_minute: Sequence[tuple[int, int]] = (),
    server: x509.Certificate | None = None,
    backlog: Backlog | None = None,
    accepted: Sequence[tuple[int, int]] = (),
) -> Tag:
    """Recipient counts (from the store's tally), delivery and acceptance rates, charts
    of recipients delivered in the last five minutes (``sent``: per second), hour and
    day (``per_minute``) and of messages accepted in the last hour and day
    (``accepted``: per minute), latency, reactor lag, disk, the server certificate's
    expiry, the domains deferring most among the recipients due soonest, the webhook
    backlog per client, client certificates expiring soon."""
    content: list[Any] = []
    if counts is None:
        content.append(tags.p("The queue could not be read just now.", class_="warn"))
    else:
        content.append(
            tags.section(
                tags.h2("Recipients by status"),
                tags.ul(class_="counts")(
                    *(
                        tags.li(tags.span(str(counts.get(s, 0)), class_="count"), " ", s)
                        for s in ("queued", "deferred", "sent", "bounced", "failed", "deleted")
                    )
                ),
            )
        )
    end = int(now) + 1
    series = bucket(sent, end - 300, end, 10)
    figures: list[tuple[str, Any]] = []
    if snapshot is not None:
        rates = snapshot.get("delivered_per_minute", {})
        accepting = snapshot.get("accepted_per_minute", {})
        latency = snapshot.get("accept_to_sent_seconds", {})
        lag = snapshot.get("reactor_lag_seconds", {})
        figures += [
            (
                "Accepted per minute (1 min / 5 min)",
                f"{accepting.get('1m', 0)} / {accepting.get('5m', 0)}",
            ),
            (
                "Delivered per minute (1 min / 5 min)",
                f"{rates.get('1m', 0)} / {rates.get('5m', 0)}",
            ),
            (
                "Accept to delivered (p50 / p99)",
                f"{duration_text(latency.get('p50'))} / {duration_text(latency.get('p99'))}",
            ),
            (
                "Reactor lag (p99 / max, last minute)",
                f"{duration_text(lag.get('p99'))} / {duration_text(lag.get('max'))}",
            ),
            ("Up for", f"{int(snapshot.get('uptime_seconds', 0))} s"),
        ]
        quarantined = snapshot.get("quarantined")
        if isinstance(quarantined, dict):
            figures.append(
                (
                    "Quarantined since start",
                    ", ".join(f"{q} {n}" for q, n in sorted(quarantined.items())) or "none",
                )
            )
        events = snapshot.get("events")
        if isinstance(events, dict):
            jobs = events.get("jobs", events)
            if isinstance(jobs, dict):
                figures.append(
                    ("Event jobs", ", ".join(f"{k} {v}" for k, v in sorted(jobs.items())) or "-")
                )
    figures.append(("Disk free (queue)", size_text(disk_free)))
    if server is not None:
        expires = server.not_valid_after_utc
        days = int((expires.timestamp() - now) // 86400)
        figures.append(("Server certificate expires", f"{date_text(expires)} (in {days} days)"))
    content.append(tags.section(tags.h2("Delivery"), definitions(figures)))
    content.append(
        bar_chart(
            series,
            "Recipients delivered, last 5 minutes",
            "per 10 seconds, oldest on the left",
        )
    )
    minute_end = end - end % 60 + 60
    for span, label, size, unit in (
        (3600, "last hour", 60, "per minute"),
        (86400, "last 24 hours", 900, "per 15 minutes"),
    ):
        content.append(
            tags.div(class_="charts")(
                bar_chart(
                    bucket(accepted, minute_end - span, minute_end, size),
                    f"Messages accepted, {label}",
                    f"{unit}, oldest on the left",
                ),
                bar_chart(
                    bucket(per_minute, minute_end - span, minute_end, size),
                    f"Recipients delivered, {label}",
                    f"{unit}, oldest on the left",
                ),
            )
        )
    if deferring is not None:
        content.append(
            table(
                f"Deferring domains (among the {DEFERRING_SCAN:,} pending recipients due soonest)",
                ("Domain", "Deferred", "Last reply"),
                [(d.domain, str(d.deferred), d.last_reply or "") for d in deferring],
            )
        )
    if backlog is not None:
        clients = sorted(set(backlog.events) | set(backlog.inbound))
        bound = f"{BACKLOG_SCAN:,} or more of a kind: counts are lower bounds"
        content.append(
            table(
                "Webhook backlog: pending jobs per client"
                + (f" ({bound})" if backlog.capped else ""),
                ("Client", "Events", "Inbound mail"),
                [
                    (c, str(backlog.events.get(c, 0)), str(backlog.inbound.get(c, 0)))
                    for c in clients
                ],
            )
        )
    if certificates is not None:
        soon = [
            r
            for r in certificates
            if certificate_state(r, now) in ("expiring", "expired") and r.revoked_at is None
        ]
        content.append(
            table(
                "Certificates expired or expiring within 30 days",
                ("Name", "Role", "Serial", "Expires"),
                [(r.name, r.role, format(r.serial, "x"), date_text(r.not_after)) for r in soon],
            )
        )
    return document("Overview", "overview", *content)
