"""The console's Domains page: each local domain's DKIM selectors and the records to
publish."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import attrs
from twisted.web.template import Tag, tags

from rail.console.layout import document, table, when_text

__all__ = ["DKIMSelectors", "domains_page", "records_block", "zones"]


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
        rows: list[list[Any]] = [[d.domain, d.ed25519, d.rsa, when_text(d.since)] for d in dkim]
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
            table(
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
            table(
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
    return document("Domains", "domains", *content, script=True)


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
