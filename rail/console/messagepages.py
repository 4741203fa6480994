"""The console's Messages pages: the search, one message with its trail and actions, and
the confirmation an action asks for."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from twisted.web.template import Tag, tags

from rail.console.layout import definitions, document, table, when_text
from rail.mail.headers import parse_header_section
from rail.store.adminmodel import LISTED_STATUSES, MessageDetail, Page
from rail.store.trail import EventRecord

__all__ = [
    "ACTIONS",
    "SEARCH_FIELDS",
    "confirm_page",
    "message_page",
    "messages_page",
]

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
                when_text(m.received_at),
                m.status,
                m.client,
                m.sender,
                ", ".join(m.recipients),
                m.meta.tag or "",
            )
            for m in page.messages
        ]
        content.append(
            table(
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
    return document("Messages", "messages", *content)


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
        definitions(
            [
                ("ID", status.id),
                ("Status", overall),
                ("Client", status.client),
                ("From", status.sender),
                ("Channel", status.channel),
                ("Received", when_text(status.received_at)),
                ("Size", f"{status.size} bytes"),
                ("Request ID", meta.request_id or "-"),
                ("Tag", meta.tag or "-"),
                ("Metadata", json.dumps(meta.metadata, sort_keys=True) if meta.metadata else "-"),
                ("Body purged", when_text(status.body_purged_at)),
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
        table(
            "Recipients",
            ("Address", "Status", "Attempts", "Last reply", "Next attempt", "Remote MTA"),
            [
                (
                    r.address,
                    r.status,
                    str(r.attempts),
                    r.last_reply or "",
                    when_text(r.next_attempt_at),
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
        table(
            "Delivery attempts",
            ("When", "Recipient", "Outcome", "Remote MTA", "Reply", "Delay"),
            [
                (
                    when_text(a.at),
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
        table(
            "Events for the app",
            ("When", "Type", "Recipient", "Sent to app", "Tries", "App's last reply", "Details"),
            [
                (
                    when_text(e.created_at),
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
        table(
            "Operator actions (audit log)",
            ("When", "By", "Action", "Reason"),
            [(when_text(a.at), a.actor, a.action, a.reason or "") for a in detail.actions],
        )
    )
    fields = parse_header_section(detail.head).fields if detail.head else []
    content.append(table("Headers", ("Name", "Value"), [(name, value) for name, value in fields]))
    return document(f"Message {status.id}", "messages", *content)


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
    return document(f"{label}?", "messages", *content)
