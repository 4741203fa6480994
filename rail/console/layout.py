"""What every console page shares: the document with its navigation, tables, definition
lists, and how times, sizes and durations are written; the 403 and notice pages.

Pages are ``twisted.web.template`` tags built from plain values: every text reaches the
page as a tag child or attribute, so the template engine escapes it, and nothing writes
markup by hand. No page has an inline script or style (the Content-Security-Policy
forbids both): one stylesheet, forms and links; pages with copy buttons also load
``console.js`` (added by the script: without it the text is selectable as ever).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from twisted.web.template import Tag, tags

__all__ = [
    "date_text",
    "definitions",
    "document",
    "duration_text",
    "forbidden_page",
    "notice_page",
    "size_text",
    "table",
    "when_text",
]

_PAGES = (
    ("overview", "Overview", "/console/"),
    ("messages", "Messages", "/console/messages"),
    ("inbound", "Inbound", "/console/inbound"),
    ("clients", "Clients", "/console/clients"),
    ("domains", "Domains", "/console/domains"),
)


def when_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def date_text(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M UTC")


def document(title: str, current: str | None, *content: Any, script: bool = False) -> Tag:
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


def table(caption: str, head: Sequence[str], rows: Sequence[Sequence[Any]]) -> Tag:
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


def definitions(pairs: Sequence[tuple[str, Any]]) -> Tag:
    out: list[Tag] = []
    for name, value in pairs:
        out.extend((tags.dt(name), tags.dd(value)))
    return tags.dl(*out)


def size_text(count: int | None) -> str:
    if count is None:
        return "unknown"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{count} B"
        value /= 1024
    return f"{count} B"


def duration_text(value: object) -> str:
    if isinstance(value, int | float):
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    return "-"


def forbidden_page(reason: str) -> Tag:
    """The 403 for a request without an admin certificate: what to do about it."""
    return document(
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
    return document(title, None, *content)
