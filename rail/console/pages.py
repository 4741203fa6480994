"""The console's pages as ``twisted.web.template`` tags, built from plain values.

Every text reaches the page as a tag child or attribute, so the template engine escapes
it; nothing here writes markup by hand. No page has an inline script or style (the
Content-Security-Policy forbids both): one stylesheet, forms and links; the Domains page
and the page of a newly issued certificate also load ``console.js`` (copy buttons, added
by the script: without it the text is selectable as ever).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import attrs
from cryptography import x509
from twisted.web.template import Tag, tags

from rail.config.clients import ClientPolicies
from rail.console.charts import bar_chart, bucket
from rail.mail.headers import parse_header_section
from rail.pki.clientevents import ClientEvents
from rail.pki.registry import CertificateRecord
from rail.store.adminmodel import LISTED_STATUSES, MessageDetail, Page
from rail.store.inboundlist import INBOUND_PAGE, InboundSummary
from rail.store.suppressionmodel import SuppressionPage
from rail.store.trail import (
    BACKLOG_SCAN,
    DEFERRING_SCAN,
    Backlog,
    DeferringDomain,
    EventRecord,
)

__all__ = [
    "ACTIONS",
    "EXPIRING",
    "SEARCH_FIELDS",
    "DKIMSelectors",
    "certificate_state",
    "clients_page",
    "confirm_page",
    "domains_page",
    "forbidden_page",
    "inbound_page",
    "inbound_retry_page",
    "message_page",
    "messages_page",
    "notice_page",
    "overview_page",
    "remove_page",
    "revoke_page",
]

EXPIRING = 30 * 86400
"""A valid certificate expiring within this many seconds is listed as ``expiring``."""

SEARCH_FIELDS = (
    "recipient",
    "sender",
    "client",
    "status",
    "request_id",
    "tag",
    "metadata",
    "received_after",
    "received_before",
)
"""The message search's fields, in the order the form shows them."""

ACTIONS = {
    "retry": ("Retry now", "Make the pending recipients due now."),
    "hold": ("Hold", "Keep the message from delivery until it is released."),
    "release": ("Release", "Lift the hold; the pending recipients are due now."),
    "delete": ("Delete", "Give up on every pending recipient, without a DSN."),
    "bounce": ("Bounce", "Give up on every pending recipient and send the sender a DSN."),
}
"""The message actions: button label and what confirming does."""

_PAGES = (
    ("overview", "Overview", "/console/"),
    ("messages", "Messages", "/console/messages"),
    ("inbound", "Inbound", "/console/inbound"),
    ("clients", "Clients", "/console/clients"),
    ("domains", "Domains", "/console/domains"),
)


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _date(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _page(title: str, current: str | None, *content: Any, script: bool = False) -> Tag:
    """The document: skip link, navigation (``current`` marked), heading, content; with
    ``script``, the console's script file (deferred, same-origin)."""
    items = [
        tags.li(tags.a(label, href=href, **({"aria-current": "page"} if name == current else {})))
        for name, label, href in _PAGES
    ]
    return tags.html(lang="en")(
        tags.head(
            tags.meta(charset="utf-8"),
            tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
            tags.title(f"{title} - Rail console"),
            tags.link(rel="stylesheet", href="/console/static/console.css"),
            tags.script(src="/console/static/console.js", defer="defer") if script else "",
        ),
        tags.body(
            tags.a("Skip to content", href="#main", class_="skip"),
            tags.header(
                tags.p("Rail console", class_="brand"),
                tags.nav(tags.ul(*items), **{"aria-label": "Console pages"}),
            ),
            Tag("main")(id="main")(tags.h1(title), *content),
        ),
    )


def _table(caption: str, head: Sequence[str], rows: Sequence[Sequence[Any]]) -> Tag:
    """A table with a caption and column headers, in a scrolling box for narrow screens;
    an empty one says so."""
    if not rows:
        return tags.section(tags.h2(caption), tags.p("None.", class_="empty"))
    return tags.div(class_="scroll")(
        tags.table(
            tags.caption(caption),
            tags.thead(tags.tr(*(tags.th(h, scope="col") for h in head))),
            tags.tbody(*(tags.tr(*(tags.td(cell) for cell in row)) for row in rows)),
        )
    )


def _dl(pairs: Sequence[tuple[str, Any]]) -> Tag:
    out: list[Tag] = []
    for name, value in pairs:
        out.extend((tags.dt(name), tags.dd(value)))
    return tags.dl(*out)


def _bytes(count: int | None) -> str:
    if count is None:
        return "unknown"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{count} B"
        value /= 1024
    return f"{count} B"


def _seconds(value: object) -> str:
    if isinstance(value, int | float):
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    return "-"


def forbidden_page(reason: str) -> Tag:
    """The 403 for a request without an admin certificate: what to do about it."""
    return _page(
        "An admin certificate is needed",
        None,
        tags.p(reason),
        tags.p(
            "The console is for operators. Ask whoever runs this Rail server for an admin "
            "certificate as a PKCS#12 bundle:"
        ),
        tags.pre(tags.code("rail certs issue --admin --name YOUR-NAME --p12")),
        tags.p(
            "Import the .p12 file into your browser (Firefox: Settings, Privacy & Security, "
            "View Certificates, Your Certificates, Import; Chromium: Settings, Privacy and "
            "security, Security, Manage certificates, Your certificates, Import), then "
            "reload this page and pick that certificate. docs/console.md has the details."
        ),
    )


def notice_page(title: str, text: str, back: str | None = None) -> Tag:
    """A page with one message (not found, refused, unavailable), and a way back."""
    content: list[Any] = [tags.p(text)]
    if back is not None:
        content.append(tags.p(tags.a("Back", href=back)))
    return _page(title, None, *content)


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
                f"{_seconds(latency.get('p50'))} / {_seconds(latency.get('p99'))}",
            ),
            (
                "Reactor lag (p99 / max, last minute)",
                f"{_seconds(lag.get('p99'))} / {_seconds(lag.get('max'))}",
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
    figures.append(("Disk free (queue)", _bytes(disk_free)))
    if server is not None:
        expires = server.not_valid_after_utc
        days = int((expires.timestamp() - now) // 86400)
        figures.append(("Server certificate expires", f"{_date(expires)} (in {days} days)"))
    content.append(tags.section(tags.h2("Delivery"), _dl(figures)))
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
            _table(
                f"Deferring domains (among the {DEFERRING_SCAN:,} pending recipients due soonest)",
                ("Domain", "Deferred", "Last reply"),
                [(d.domain, str(d.deferred), d.last_reply or "") for d in deferring],
            )
        )
    if backlog is not None:
        clients = sorted(set(backlog.events) | set(backlog.inbound))
        bound = f"{BACKLOG_SCAN:,} or more of a kind: counts are lower bounds"
        content.append(
            _table(
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
            _table(
                "Certificates expired or expiring within 30 days",
                ("Name", "Role", "Serial", "Expires"),
                [(r.name, r.role, format(r.serial, "x"), _date(r.not_after)) for r in soon],
            )
        )
    return _page("Overview", "overview", *content)


_LABELS = {
    "request_id": "Request ID",
    "metadata": "Metadata (key=value)",
    "received_after": "Received after (UTC)",
    "received_before": "Received before (UTC)",
}
_KINDS = {
    "recipient": "email",
    "sender": "email",
    "received_after": "datetime-local",
    "received_before": "datetime-local",
}


def _search_form(values: dict[str, str]) -> Tag:
    fields: list[Any] = []
    for name in SEARCH_FIELDS:
        label = _LABELS.get(name, name.replace("_", " ").capitalize())
        field_id = f"f-{name}"
        if name == "status":
            options = [tags.option("any", value="")]
            for status in LISTED_STATUSES:
                option = tags.option(status, value=status)
                if values.get(name) == status:
                    option(selected="selected")
                options.append(option)
            control = tags.select(*options, name=name, id=field_id)
        else:
            kind = _KINDS.get(name, "text")
            control = tags.input(type=kind, name=name, id=field_id, value=values.get(name, ""))
            if name == "metadata":
                control(placeholder="key=value")
        fields.append(tags.div(class_="field")(tags.label(label, for_=field_id), control))
    return tags.form(method="get", action="/console/messages", role="search")(
        *fields, tags.div(class_="field")(tags.button("Search", type="submit"))
    )


def messages_page(values: dict[str, str], page: Page | None, problem: str | None) -> Tag:
    """The search form and, for a search, its results newest first with a link to the
    older ones (a search reads a bounded window, so a page may be short)."""
    content: list[Any] = [_search_form(values)]
    if problem is not None:
        content.append(tags.p(problem, class_="warn", role="alert"))
    if page is not None:
        rows = [
            (
                tags.a(m.id, href=f"/console/messages/{m.id}"),
                _when(m.received_at),
                m.status,
                m.client,
                m.sender,
                ", ".join(m.recipients),
                m.meta.tag or "",
            )
            for m in page.messages
        ]
        content.append(
            _table(
                "Messages, newest first",
                ("ID", "Received", "Status", "Client", "From", "Recipients", "Tag"),
                rows,
            )
        )
        if page.next_cursor is not None:
            older = {k: v for k, v in values.items() if v}
            older["cursor"] = page.next_cursor
            content.append(
                tags.p(tags.a("Older messages", href="/console/messages?" + urlencode(older)))
            )
    return _page("Messages", "messages", *content)


def message_page(detail: MessageDetail, events: Sequence[EventRecord], done: str | None) -> Tag:
    """A message's trail: recipients, every attempt, the events for the app, the
    operators' actions, its headers; and the actions that apply."""
    status = detail.status
    overall = "held" if detail.held and status.status in ("queued", "deferred") else status.status
    content: list[Any] = []
    if done is not None:
        content.append(tags.p(done, class_="done", role="status"))
    meta = status.meta
    content.append(
        _dl(
            [
                ("ID", status.id),
                ("Status", overall),
                ("Client", status.client),
                ("From", status.sender),
                ("Channel", status.channel),
                ("Received", _when(status.received_at)),
                ("Size", f"{status.size} bytes"),
                ("Request ID", meta.request_id or "-"),
                ("Tag", meta.tag or "-"),
                ("Metadata", json.dumps(meta.metadata, sort_keys=True) if meta.metadata else "-"),
                ("Body purged", _when(status.body_purged_at)),
            ]
        )
    )
    pending = any(r.status in ("queued", "deferred") for r in status.recipients)
    actions = []
    if pending:
        names = ["retry", "release" if detail.held else "hold", "delete", "bounce"]
        actions = [
            tags.li(
                tags.a(ACTIONS[n][0], href=f"/console/messages/{status.id}/{n}", class_="button")
            )
            for n in names
        ]
    content.append(
        tags.section(tags.h2("Actions"), tags.ul(*actions, class_="actions"))
        if actions
        else tags.p("No recipient is pending: nothing to retry, hold, delete or bounce.")
    )
    content.append(
        _table(
            "Recipients",
            ("Address", "Status", "Attempts", "Last reply", "Next attempt", "Remote MTA"),
            [
                (
                    r.address,
                    r.status,
                    str(r.attempts),
                    r.last_reply or "",
                    _when(r.next_attempt_at),
                    mta or "",
                )
                for r, mta in zip(
                    status.recipients,
                    list(detail.remote_mta)
                    + [None] * (len(status.recipients) - len(detail.remote_mta)),
                    strict=False,
                )
            ],
        )
    )
    addresses = [r.address for r in status.recipients]
    content.append(
        _table(
            "Delivery attempts",
            ("When", "Recipient", "Outcome", "Remote MTA", "Reply", "Delay"),
            [
                (
                    _when(a.at),
                    addresses[a.idx] if 0 <= a.idx < len(addresses) else str(a.idx),
                    a.status,
                    a.remote_mta or "",
                    a.reply or "",
                    f"{max(0.0, a.at - status.received_at):.1f} s",
                )
                for a in detail.history
            ],
        )
    )
    content.append(
        _table(
            "Events for the app",
            ("When", "Type", "Recipient", "Sent to app", "Tries", "App's last reply", "Details"),
            [
                (
                    _when(e.created_at),
                    e.type,
                    e.recipient or "",
                    e.status,
                    str(e.attempts),
                    e.last_reply or "",
                    json.dumps(e.details, sort_keys=True),
                )
                for e in events
            ],
        )
    )
    content.append(
        _table(
            "Operator actions (audit log)",
            ("When", "By", "Action", "Reason"),
            [(_when(a.at), a.actor, a.action, a.reason or "") for a in detail.actions],
        )
    )
    fields = parse_header_section(detail.head).fields if detail.head else []
    content.append(_table("Headers", ("Name", "Value"), [(name, value) for name, value in fields]))
    return _page(f"Message {status.id}", "messages", *content)


def confirm_page(message_id: str, action: str, token: str, problem: str | None = None) -> Tag:
    """The confirmation step of a message action: a form that posts it, with the page's
    CSRF token and a reason (required to delete)."""
    label, effect = ACTIONS[action]
    target = f"/console/messages/{message_id}/{action}"
    content: list[Any] = []
    if problem is not None:
        content.append(tags.p(problem, class_="warn", role="alert"))
    reason = tags.input(type="text", name="reason", id="reason", maxlength="1000")
    if action == "delete":
        reason(required="required")
    fields: list[Any] = [tags.input(type="hidden", name="csrf", value=token)]
    if action in ("hold", "delete", "bounce"):
        fields.append(
            tags.div(class_="field")(
                tags.label(
                    "Reason" + (" (required)" if action == "delete" else " (optional)"),
                    for_="reason",
                ),
                reason,
            )
        )
    content += [
        tags.p(effect, " Message ", tags.code(message_id), "."),
        tags.form(method="post", action=target)(
            *fields,
            tags.div(class_="field")(
                tags.button(f"Confirm: {label}", type="submit"),
                " ",
                tags.a("Cancel", href=f"/console/messages/{message_id}"),
            ),
        ),
    ]
    return _page(f"{label}?", "messages", *content)


def certificate_state(record: CertificateRecord, now: float) -> str:
    """``revoked``, ``expired``, ``expiring`` (within :data:`EXPIRING`) or ``valid``."""
    if record.revoked_at is not None:
        return "revoked"
    left = record.not_after.timestamp() - now
    if left < 0:
        return "expired"
    if left < EXPIRING:
        return "expiring"
    return "valid"


def clients_page(
    now: float,
    certificates: Sequence[CertificateRecord] | None,
    client: str,
    q: str,
    suppressions: SuppressionPage | None,
    done: str | None,
    revocable: bool = False,
    policies: ClientPolicies | None = None,
    events: dict[str, ClientEvents] | None = None,
    issue: Tag | None = None,
) -> Tag:
    """The certificates in the registry (with a Revoke link when ``revocable``; each
    client's limits and sandbox flag from ``policies``, its event subscription from
    ``events``), the ``issue`` form, and one client's suppression list."""
    content: list[Any] = []
    if done is not None:
        content.append(tags.p(done, class_="done", role="status"))
    if certificates is None:
        content.append(tags.p("The certificate registry could not be read.", class_="warn"))
    else:
        content.append(
            _table(
                "Certificates",
                (
                    "Name",
                    "Role",
                    "Serial",
                    "State",
                    "Expires",
                    "Senders",
                    "Webhook",
                    "Limits",
                    "Sandbox",
                    "Events",
                    "Action",
                ),
                [
                    (
                        r.name,
                        r.role,
                        format(r.serial, "x"),
                        certificate_state(r, now),
                        _date(r.not_after),
                        ", ".join(r.senders) or "-",
                        r.webhook or "-",
                        _limits(policies, r),
                        _sandbox(policies, r),
                        _events(events, r),
                        tags.a(
                            "Revoke",
                            href=f"/console/certificates/{r.serial:x}/revoke",
                            **{"aria-label": f"Revoke {r.name} ({r.serial:x})"},
                        )
                        if revocable and r.revoked_at is None
                        else "",
                    )
                    for r in certificates
                ],
            )
        )
    if issue is not None:
        content += [tags.h2("Issue a certificate", id="issue"), issue]
    content.append(tags.h2("Suppression list", id="suppressions"))
    content.append(
        tags.form(method="get", action="/console/clients", role="search")(
            tags.div(class_="field")(
                tags.label("Client", for_="s-client"),
                tags.input(
                    type="text", name="client", id="s-client", value=client, required="required"
                ),
            ),
            tags.div(class_="field")(
                tags.label("Address contains", for_="s-q"),
                tags.input(type="text", name="q", id="s-q", value=q),
            ),
            tags.div(class_="field")(tags.button("Search", type="submit")),
        )
    )
    if suppressions is not None:
        rows = [
            (
                e.address,
                e.reason,
                e.source or "",
                _when(e.created_at),
                tags.a(
                    "Remove",
                    href="/console/suppressions/remove?"
                    + urlencode({"client": client, "address": e.address}),
                    **{"aria-label": f"Remove {e.address}"},
                ),
            )
            for e in suppressions.entries
        ]
        content.append(
            _table(
                f"Suppressed for {client}", ("Address", "Reason", "Source", "Since", "Action"), rows
            )
        )
    return _page("Clients", "clients", *content)


def _limits(policies: ClientPolicies | None, record: CertificateRecord) -> str:
    """A client's limits in force, ``-`` for an admin (it sends nothing)."""
    if policies is None or record.role == "admin":
        return "-"
    limits = policies.limits(record.name)
    shown = [
        f"{value} {label}"
        for label, value in (
            ("messages/min", limits.messages_per_minute),
            ("messages/h", limits.messages_per_hour),
            ("messages/day", limits.messages_per_day),
            ("recipients/day", limits.recipients_per_day),
        )
        if value is not None
    ]
    return ", ".join(shown) or "none"


def _events(events: dict[str, ClientEvents] | None, record: CertificateRecord) -> str:
    """The client's event subscription: the types and where they are POSTed."""
    if events is None or record.role == "admin":
        return "-"
    settings = events.get(record.name)
    if settings is None or not settings.types:
        return "none"
    return f"{', '.join(settings.types)} to {settings.url or 'the webhook URL'}"


def _sandbox(policies: ClientPolicies | None, record: CertificateRecord) -> str:
    if policies is None or record.role == "admin":
        return "-"
    return "yes" if policies.sandbox(record.name) else "no"


def remove_page(client: str, address: str, token: str) -> Tag:
    """The confirmation step of taking an address off a client's suppression list."""
    return _page(
        "Remove from the suppression list?",
        "clients",
        tags.p("Mail from ", tags.code(client), " to ", tags.code(address), " will be sent again."),
        tags.form(method="post", action="/console/suppressions/remove")(
            tags.input(type="hidden", name="csrf", value=token),
            tags.input(type="hidden", name="client", value=client),
            tags.input(type="hidden", name="address", value=address),
            tags.div(class_="field")(
                tags.button("Confirm: remove", type="submit"),
                " ",
                tags.a("Cancel", href="/console/clients?" + urlencode({"client": client})),
            ),
        ),
    )


@attrs.frozen
class DKIMSelectors:
    """The selectors a domain's mail is signed with now, and when those keys began."""

    domain: str
    ed25519: str
    rsa: str
    since: float | None
    records: tuple[str, ...] = ()
    """The newest keys' records, as zone-file lines."""


def domains_page(
    records: str | None,
    report: dict[str, Any] | None,
    problem: str | None,
    token: str,
    checks: bool = True,
    dkim: Sequence[DKIMSelectors] | None = None,
    rotatable: bool = False,
    notice: Tag | None = None,
) -> Tag:
    """The DKIM selectors in use (``dkim``; with a Rotate link each when
    ``rotatable``), the DNS records to publish (``rail dns records``) and, on request (a
    form with ``token``, when ``checks`` are available), ``rail doctor``'s verdicts;
    ``notice`` (a rotation's outcome) first."""
    content: list[Any] = []
    if notice is not None:
        content.append(notice)
    if dkim is not None:
        head = ["Domain", "Ed25519 selector", "RSA selector", "Keys in use since"]
        rows: list[list[Any]] = [[d.domain, d.ed25519, d.rsa, _when(d.since)] for d in dkim]
        if rotatable:
            head.append("Action")
            for row, d in zip(rows, dkim, strict=True):
                row.append(
                    tags.a(
                        "Rotate",
                        href=f"/console/dkim/{quote(d.domain)}/rotate",
                        **{"aria-label": f"Rotate the DKIM keys of {d.domain}"},
                    )
                )
        content.append(
            _table(
                "DKIM selectors signing now"
                + ("" if rotatable else " (rotate with rail dkim rotate DOMAIN)"),
                head,
                rows,
            )
        )
    content.append(tags.h2("Records to publish"))
    if records is None:
        content.append(tags.p(problem or "The records could not be built.", class_="warn"))
    else:
        for origin, text in zones(records):
            content.append(records_block(text, f"Copy the records of {origin}"))
    content.append(tags.h2("Checks (rail doctor)"))
    if not checks:
        content.append(tags.p("The checks are not available here."))
    elif report is None:
        content.append(
            tags.p("The checks query public DNS and connect to this server; they take seconds.")
        )
        content.append(
            tags.form(method="post", action="/console/domains/check")(
                tags.input(type="hidden", name="csrf", value=token),
                tags.div(class_="field")(tags.button("Run the checks", type="submit")),
            )
        )
    else:
        if report.get("error"):
            content.append(
                tags.p(f"The checks could not run: {report['error']}", class_="warn", role="alert")
            )
        counts = report.get("counts", {})
        content.append(
            tags.p(", ".join(f"{k} {v}" for k, v in counts.items()) or "-", class_="summary")
        )
        content.append(
            _table(
                "Verdicts",
                ("Check", "Domain", "Verdict", "Expected", "Found"),
                [
                    (
                        c.get("check", ""),
                        c.get("domain", ""),
                        c.get("status", ""),
                        c.get("expected", ""),
                        c.get("found", ""),
                    )
                    for c in report.get("checks", [])
                ],
            )
        )
    return _page("Domains", "domains", *content, script=True)


def records_block(text: str, label: str) -> Tag:
    """Records in a focusable, selectable block; ``label`` names the copy button the
    script adds (``data-copy``)."""
    return tags.pre(tags.code(text), tabindex="0", class_="records", **{"data-copy": label})


_ZONE_HEAD = "; Rail's records for "


def zones(records: str) -> list[tuple[str, str]]:
    """``rail dns records``' text cut into its zones: (origin, that zone's text); text
    that does not start with a zone's comment line is one block, ``all domains``."""
    found: list[tuple[str, str]] = []
    for chunk in records.split("\n\n"):
        if not chunk.strip():
            continue
        first = chunk.split("\n", 1)[0]
        if first.startswith(_ZONE_HEAD):
            origin = first[len(_ZONE_HEAD) :].split(" ", 1)[0]
            found.append((origin, chunk.rstrip("\n") + "\n"))
        else:
            return [("all domains", records)]
    return found or [("all domains", records)]


def message_href(message_id: str, done: str | None = None) -> str:
    """The message page's path, with the outcome of an action to show."""
    path = f"/console/messages/{quote(message_id)}"
    return path if done is None else path + "?" + urlencode({"done": done})


def _authentication(results: dict[str, Any]) -> str:
    """``spf=pass dkim=pass dmarc=pass arc=none`` from the webhook payload's field."""
    parts = []
    for name in ("spf", "dkim", "dmarc", "arc"):
        value = results.get(name)
        if isinstance(value, list):
            found = ",".join(str(v.get("result", "?")) for v in value if isinstance(v, dict))
            parts.append(f"{name}={found or 'none'}")
        elif isinstance(value, dict):
            parts.append(f"{name}={value.get('result', '?')}")
    return " ".join(parts) or "-"


def inbound_page(messages: Sequence[InboundSummary], done: str | None) -> Tag:
    """Recent inbound mail, newest first: envelope, subject, authentication results and
    each client's webhook job; a retry action for pending jobs."""
    content: list[Any] = []
    if done is not None:
        content.append(tags.p(done, class_="done", role="status"))
    rows = []
    for m in messages:
        jobs = tags.ul(
            *(
                tags.li(
                    f"{j.client}: {j.status}, {j.attempts} attempt(s)",
                    f", {j.last_reply}" if j.last_reply else "",
                    f", next {_when(j.next_attempt_at)}" if j.next_attempt_at else "",
                )
                for j in m.jobs
            ),
            class_="plain",
        )
        pending = any(j.status in ("queued", "deferred") for j in m.jobs)
        action: Any = (
            tags.a(
                "Retry webhook",
                href=f"/console/inbound/{m.id}/retry",
                **{"aria-label": f"Retry the webhook of {m.id}"},
            )
            if pending
            else ""
        )
        rows.append(
            (
                m.id,
                _when(m.received_at),
                m.sender or "<>",
                ", ".join(r for j in m.jobs for r in j.recipients),
                m.subject,
                _authentication(m.authentication),
                jobs,
                action,
            )
        )
    content.append(
        _table(
            f"Inbound mail, newest {INBOUND_PAGE}",
            ("ID", "Received", "From", "To", "Subject", "Authentication", "Webhooks", "Action"),
            rows,
        )
    )
    if len(messages) == INBOUND_PAGE:
        content.append(
            tags.p(
                tags.a(
                    "Older inbound mail",
                    href="/console/inbound?" + urlencode({"before": messages[-1].id}),
                )
            )
        )
    return _page("Inbound", "inbound", *content)


def inbound_retry_page(message_id: str, token: str) -> Tag:
    """The confirmation step of retrying an inbound message's webhooks now."""
    return _page(
        "Retry the webhook now?",
        "inbound",
        tags.p(
            "The pending webhook jobs of inbound message ",
            tags.code(message_id),
            " become due now.",
        ),
        tags.form(method="post", action=f"/console/inbound/{message_id}/retry")(
            tags.input(type="hidden", name="csrf", value=token),
            tags.div(class_="field")(
                tags.button("Confirm: retry the webhook", type="submit"),
                " ",
                tags.a("Cancel", href="/console/inbound"),
            ),
        ),
    )


def revoke_page(serial: str, token: str) -> Tag:
    """The confirmation step of revoking a certificate."""
    return _page(
        "Revoke the certificate?",
        "clients",
        tags.p(
            "Certificate ",
            tags.code(serial),
            " stops working within a second, for mail and for the API; this cannot be"
            " undone. Revoking your own certificate ends your access to this console.",
        ),
        tags.form(method="post", action=f"/console/certificates/{serial}/revoke")(
            tags.input(type="hidden", name="csrf", value=token),
            tags.div(class_="field")(
                tags.button("Confirm: revoke", type="submit"),
                " ",
                tags.a("Cancel", href="/console/clients"),
            ),
        ),
    )
