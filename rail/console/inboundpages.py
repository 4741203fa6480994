"""The console's Inbound pages: recent inbound messages with their checks and webhook
state, and the confirmation of a webhook retry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from twisted.web.template import Tag, tags

from rail.console.layout import document, table, when_text
from rail.store.inboundlist import INBOUND_PAGE, InboundSummary

__all__ = ["inbound_page", "inbound_retry_page"]


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
                    f", next {when_text(j.next_attempt_at)}" if j.next_attempt_at else "",
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
                when_text(m.received_at),
                m.sender or "<>",
                ", ".join(r for j in m.jobs for r in j.recipients),
                m.subject,
                _authentication(m.authentication),
                jobs,
                action,
            )
        )
    content.append(
        table(
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
    return document("Inbound", "inbound", *content)


def inbound_retry_page(message_id: str, token: str) -> Tag:
    """The confirmation step of retrying an inbound message's webhooks now."""
    return document(
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
