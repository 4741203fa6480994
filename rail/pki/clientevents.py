"""Which events each client asked for, and where they go: a table of the registry.

Keyed by client name, like the certificates it belongs with, so a rotated certificate
keeps its client's choice. Set by ``rail certs issue --events``, ``rail clients events``
and ``PUT /api/v1/admin/clients/{name}/events``; a running server reads it every second
(:mod:`rail.pki.eventwatch`) into the store's :class:`~rail.events.subscriptions.Subscriptions`.
The functions here run in the registry's transactions (:class:`rail.pki.registry.Registry`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from rail.events.subscriptions import Subscriptions, parse_event_types, subscription_of
from rail.pki.names import validate_webhook

__all__ = [
    "CLIENT_EVENTS_SCHEMA",
    "ClientEvents",
    "EventSettingsError",
    "check_event_settings",
    "read_client_events",
    "subscriptions_from",
    "write_client_events",
]

CLIENT_EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS client_events (
    name TEXT PRIMARY KEY,            -- the client (certificate CN)
    types TEXT NOT NULL,              -- JSON array of event types, or ["all"]
    url TEXT,                         -- NULL: the webhook URL of the client's certificate
    updated_at TEXT NOT NULL
);
"""


class EventSettingsError(ValueError):
    """Settings refused; ``problems`` are one line each, naming the item."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@attrs.frozen
class ClientEvents:
    """A client's event settings: ``types`` as picked (``("all",)`` for every type; ``()``
    for none), ``url`` where they are POSTed (None: its certificate's webhook URL)."""

    name: str
    types: tuple[str, ...] = ()
    url: str | None = None


def check_event_settings(
    types: Iterable[str],
    url: str | None,
    *,
    webhook: str | None,
    allow_http_loopback: bool,
    types_label: str = "--events",
    url_label: str = "--events-url",
) -> tuple[str, ...]:
    """The stored form of ``types``, after checking the settings make sense: every type
    known, ``url`` a URL Rail may POST to, and somewhere to POST (``url`` or the client's
    certificate ``webhook``) when any type is picked. Raises :class:`EventSettingsError`
    naming each problem with the labels given (CLI options or JSON fields)."""
    problems = []
    picked: tuple[str, ...] = ()
    try:
        picked = parse_event_types(types)
    except ValueError as error:
        problems.append(f"{types_label}: {error}")
    if url is not None:
        problem = validate_webhook(url, allow_http_loopback)
        if problem is not None:
            problems.append(f"{url_label} {url!r}: {problem}")
    elif picked and webhook is None:
        problems.append(
            f"{url_label}: required, the client's certificate has no webhook URL to send events to"
        )
    if problems:
        raise EventSettingsError(problems)
    return picked


def write_client_events(connection: Any, settings: ClientEvents, updated_at: str) -> None:
    """Store ``settings`` (in the caller's transaction); no types removes the row."""
    if not settings.types:
        connection.execute("DELETE FROM client_events WHERE name = ?", (settings.name,))
        return
    connection.execute(
        "INSERT INTO client_events (name, types, url, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET types = excluded.types, url = excluded.url,"
        " updated_at = excluded.updated_at",
        (settings.name, json.dumps(list(settings.types)), settings.url, updated_at),
    )


def read_client_events(connection: Any, name: str | None = None) -> list[ClientEvents]:
    """Every client's settings, by name, or only ``name``'s."""
    sql = "SELECT name, types, url FROM client_events"
    params: tuple[str, ...] = ()
    if name is not None:
        sql += " WHERE name = ?"
        params = (name,)
    rows = connection.execute(sql + " ORDER BY name", params).fetchall()
    return [ClientEvents(row[0], tuple(json.loads(row[1])), row[2]) for row in rows]


def subscriptions_from(settings: Sequence[ClientEvents]) -> Subscriptions:
    """What the store filters events by. A stored type this Rail does not know (written
    by a newer one) is kept out rather than failing the server."""
    return Subscriptions(
        {
            each.name: subscription_of(
                tuple(t for t in each.types if _known(t)),
                each.url,
            )
            for each in settings
        }
    )


def _known(name: str) -> bool:
    try:
        return bool(parse_event_types([name]))
    except ValueError:
        return False
