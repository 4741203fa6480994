"""The console's Clients pages: certificates with their state, limits, events and
suppressions, and the confirmations of a removal and a revocation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from twisted.web.template import Tag, tags

from rail.config.clients import ClientPolicies
from rail.console.layout import date_text, document, table, when_text
from rail.pki.clientevents import ClientEvents
from rail.pki.registry import CertificateRecord
from rail.store.suppressionmodel import SuppressionPage

__all__ = ["EXPIRING", "certificate_state", "clients_page", "remove_page", "revoke_page"]

EXPIRING = 30 * 86400
"""A valid certificate expiring within this many seconds is listed as ``expiring``."""


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
            table(
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
                        date_text(r.not_after),
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
                when_text(e.created_at),
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
            table(
                f"Suppressed for {client}", ("Address", "Reason", "Source", "Since", "Action"), rows
            )
        )
    return document("Clients", "clients", *content)


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
    return document(
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


def revoke_page(serial: str, token: str) -> Tag:
    """The confirmation step of revoking a certificate."""
    return document(
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
