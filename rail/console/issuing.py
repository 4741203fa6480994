"""The console's certificate issuing and DKIM rotation: the issue form's values, and the
pages of both actions (form, confirmation, result) as ``twisted.web.template`` tags.

Issuing takes two POSTs with the form's CSRF token: the first checks the fields (the
checks and messages of ``rail certs issue``) and shows what will be issued; the second,
confirmed, issues. Its answer shows the certificate and the private key once, in the
page only (``no-store``; never in a URL, never logged); each can be saved as a file
through a POST that sends it back as an attachment. Pure: plain values in, tags out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import attrs
from twisted.web.template import Tag, tags

from rail.console.domainpages import DKIMSelectors, records_block
from rail.console.layout import definitions, document
from rail.pki.operations import IssuedPEM

__all__ = [
    "DOWNLOADS",
    "IssueForm",
    "Issued",
    "download_problem",
    "issue_confirm_page",
    "issue_form",
    "issue_page",
    "issued_page",
    "read_issue_form",
    "rotate_confirm_page",
    "rotated_notice",
]

DOWNLOADS = {"crt": "-----BEGIN CERTIFICATE-----", "key": "-----BEGIN PRIVATE KEY-----"}
"""What each download is (its file extension) and how its PEM starts."""

_MAX_PEM = 16 * 1024
"""Larger than any certificate Rail issues (100 senders) or key (RSA 2048)."""

_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@attrs.frozen
class IssueForm:
    """The issue form's fields as typed (checked by the same code as ``rail certs
    issue``'s options: ``--name``, ``--email``, ``--webhook``, ``--admin``,
    ``--key-type``, ``--days``, ``--events``, ``--events-url``)."""

    name: str = ""
    emails: tuple[str, ...] = ()
    webhook: str | None = None
    admin: bool = False
    key_type: str = ""
    days: str = ""
    events: str = ""
    events_url: str | None = None


@attrs.frozen
class Issued:
    """A certificate issued from the console: the PEMs, and its event subscription
    (the ``rail certs issue`` line, or None)."""

    pem: IssuedPEM
    events: str | None = None


def read_issue_form(args: dict[bytes, list[bytes]]) -> IssueForm:
    """The fields of a posted issue form; sender addresses are separated by commas,
    spaces or new lines."""

    def value(name: str) -> str:
        found = args.get(name.encode("ascii"))
        return found[-1].decode("utf-8", "replace").strip() if found else ""

    return IssueForm(
        name=value("name"),
        emails=tuple(re.split(r"[\s,]+", value("emails"))) if value("emails") else (),
        webhook=value("webhook") or None,
        admin=value("admin") == "1",
        key_type=value("key_type"),
        days=value("days"),
        events=value("events"),
        events_url=value("events_url") or None,
    )


def _field(label: str, control: Tag, hint: str | None = None) -> Tag:
    """A labelled control (its ``id`` set here from its name), with a hint that
    describes it."""
    field_id = "i-" + str(control.attributes["name"]).replace("_", "-")
    control(id=field_id)
    field = tags.div(class_="field")(tags.label(label, for_=field_id), control)
    if hint is not None:
        control(**{"aria-describedby": f"{field_id}-hint"})
        field(tags.span(hint, id=f"{field_id}-hint", class_="hint"))
    return field


def issue_form(token: str, form: IssueForm, key_types: Sequence[str], default_key_type: str) -> Tag:
    """The issue form, filled with ``form``'s values."""
    key_type = form.key_type or default_key_type
    admin = tags.input(type="checkbox", name="admin", id="i-admin", value="1")
    if form.admin:
        admin(checked="checked")
    return tags.form(method="post", action="/console/certificates/issue", class_="issue")(
        tags.input(type="hidden", name="csrf", value=token),
        _field(
            "Name (--name)",
            tags.input(type="text", name="name", value=form.name, required="required"),
            "letters, digits, . _ -",
        ),
        tags.div(class_="field check")(
            admin,
            tags.label(
                "Admin certificate (--admin): console and admin API, no mail", for_="i-admin"
            ),
        ),
        _field(
            "Sender addresses (--email)",
            tags.textarea(" ".join(form.emails), name="emails", rows="2"),
            "separated by spaces, commas or lines; none for an admin",
        ),
        _field(
            "Webhook URL (--webhook)",
            tags.input(type="url", name="webhook", value=form.webhook or ""),
            "optional: where inbound mail is POSTed",
        ),
        _field(
            "Events (--events)",
            tags.input(type="text", name="events", value=form.events),
            "optional: event types, comma-separated, or all",
        ),
        _field(
            "Events URL (--events-url)",
            tags.input(type="url", name="events_url", value=form.events_url or ""),
            "optional: default the webhook URL",
        ),
        _field(
            "Key type (--key-type)",
            tags.select(
                *(
                    tags.option(k, value=k, **({"selected": "selected"} if k == key_type else {}))
                    for k in key_types
                ),
                name="key_type",
            ),
            "browsers need ecdsa-p256 or rsa2048",
        ),
        _field(
            "Validity in days (--days)",
            tags.input(type="number", name="days", value=form.days, min="1"),
            "optional: default pki.client_validity",
        ),
        tags.div(class_="field")(tags.button("Review", type="submit")),
    )


def issue_page(
    token: str,
    form: IssueForm,
    key_types: Sequence[str],
    default_key_type: str,
    problems: Sequence[str],
) -> Tag:
    """The issue form again, with what is wrong (the messages of ``rail certs issue``)."""
    content: list[Any] = []
    if problems:
        content.append(
            tags.div(class_="warn", role="alert")(
                tags.p("Nothing was issued:"), tags.ul(*(tags.li(p) for p in problems))
            )
        )
    content.append(issue_form(token, form, key_types, default_key_type))
    return document("Issue a certificate", "clients", *content)


def _hidden(form: IssueForm) -> list[Tag]:
    values = {
        "name": form.name,
        "emails": " ".join(form.emails),
        "webhook": form.webhook or "",
        "admin": "1" if form.admin else "",
        "key_type": form.key_type,
        "days": form.days,
        "events": form.events,
        "events_url": form.events_url or "",
    }
    return [tags.input(type="hidden", name=k, value=v) for k, v in values.items()]


def issue_confirm_page(token: str, form: IssueForm, days: int) -> Tag:
    """The confirmation step: what will be issued, and a button that issues it."""
    return document(
        "Issue this certificate?",
        "clients",
        definitions(
            [
                ("Name", form.name),
                ("Role", "admin" if form.admin else "client"),
                ("Senders", ", ".join(form.emails) or "-"),
                ("Webhook", form.webhook or "-"),
                ("Events", form.events or "-"),
                ("Events URL", form.events_url or "-"),
                ("Key type", form.key_type),
                ("Valid for", f"{days} days"),
            ]
        ),
        tags.p(
            "The private key is made on the server, shown once on the next page and not"
            " kept: save it there."
        ),
        tags.form(method="post", action="/console/certificates/issue")(
            tags.input(type="hidden", name="csrf", value=token),
            *_hidden(form),
            tags.input(type="hidden", name="confirm", value="1"),
            tags.div(class_="field")(
                tags.button("Confirm: issue", type="submit"),
                " ",
                tags.a("Cancel", href="/console/clients"),
            ),
        ),
    )


def _download(token: str, name: str, kind: str, pem: bytes) -> Tag:
    return tags.form(method="post", action="/console/certificates/download")(
        tags.input(type="hidden", name="csrf", value=token),
        tags.input(type="hidden", name="name", value=name),
        tags.input(type="hidden", name="kind", value=kind),
        tags.input(type="hidden", name="pem", value=pem.decode("ascii")),
        tags.button(f"Download {name}.{kind}", type="submit"),
    )


def issued_page(issued: Issued, download_token: str) -> Tag:
    """The certificate and its private key, shown this once, with downloads."""
    record = issued.pem.record
    name = record.name
    facts = [
        ("Name", name),
        ("Role", record.role),
        ("Serial", format(record.serial, "x")),
        ("Key type", record.key_type),
        ("Senders", ", ".join(record.senders) or "-"),
        ("Webhook", record.webhook or "-"),
        ("Expires", record.not_after.strftime("%Y-%m-%d %H:%M UTC")),
    ]
    if issued.events is not None:
        facts.append(("Events", issued.events))
    content: list[Any] = [
        tags.p(
            "Issued. Save the private key now: it is shown only on this page, which the"
            " browser does not store, and Rail keeps no copy.",
            class_="done",
            role="status",
        ),
        definitions(facts),
    ]
    for conflict in issued.pem.shared:
        content.append(
            tags.p(f"{conflict.address} is shared with {conflict.describe()}.", class_="warn")
        )
    if issued.pem.siblings:
        serials = ", ".join(format(r.serial, "x") for r in issued.pem.siblings)
        content.append(
            tags.p(
                f"{name} has other valid certificates (serial {serials}); once the new one"
                " is deployed, revoke each old one.",
                class_="warn",
            )
        )
    for title, kind, pem in (
        ("Certificate", "crt", issued.pem.certificate_pem),
        ("Private key", "key", issued.pem.key_pem),
    ):
        content += [
            tags.h2(f"{title} ({name}.{kind})"),
            records_block(pem.decode("ascii"), f"Copy the {title.lower()} of {name}"),
            _download(download_token, name, kind, pem),
        ]
    if record.role == "admin":
        content.append(
            tags.p(
                "For a browser, bundle both into PKCS#12: ",
                tags.code(
                    f"openssl pkcs12 -export -in {name}.crt -inkey {name}.key -out {name}.p12"
                ),
                " (or issue with rail certs issue --admin --p12).",
            )
        )
    content.append(tags.p(tags.a("Back to the clients", href="/console/clients")))
    return document(f"Certificate issued: {name}", "clients", *content, script=True)


def download_problem(name: str, kind: str, pem: str) -> str | None:
    """Why a download request is not one the issued page makes, or None."""
    if not _FILE_NAME.fullmatch(name):
        return "That is not a certificate's name."
    if kind not in DOWNLOADS:
        return "Only a certificate (crt) or a key (key) can be downloaded."
    if len(pem) > _MAX_PEM or not pem.isascii() or not pem.startswith(DOWNLOADS[kind]):
        return "That is not a PEM file this console issued."
    return None


def rotate_confirm_page(domain: str, token: str) -> Tag:
    """The confirmation step of rotating a domain's DKIM keys."""
    return document(
        "Rotate the DKIM keys?",
        "domains",
        tags.p(
            "New DKIM keys are made for ",
            tags.code(domain),
            "; mail received from then on is signed with them, as after rail dkim rotate"
            " and a reload. Publish their records at once: receivers cannot verify the new"
            " signatures until they can look the keys up.",
        ),
        tags.form(method="post", action=f"/console/dkim/{domain}/rotate")(
            tags.input(type="hidden", name="csrf", value=token),
            tags.div(class_="field")(
                tags.button("Confirm: rotate", type="submit"),
                " ",
                tags.a("Cancel", href="/console/domains"),
            ),
        ),
    )


def rotated_notice(selectors: DKIMSelectors) -> Tag:
    """After a rotation: the selectors the domain signs with now and their records."""
    domain = selectors.domain
    return tags.section(class_="done", role="status")(
        tags.p(
            f"Rotated {domain}: it signs with selectors {selectors.ed25519} (Ed25519) and"
            f" {selectors.rsa} (RSA) from now on. Publish these records:"
        ),
        records_block(
            "\n".join(selectors.records) + "\n", f"Copy the new DKIM records of {domain}"
        ),
    )
