"""``rail clients events`` and ``rail certs issue --events``: which events a client gets.

The settings live in the registry (:mod:`rail.pki.clientevents`); a running Rail reads
them every second, so a change needs no restart. Type names are checked here, before
anything is written: an unknown one is a usage error (exit 2) naming it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from rail.config import Config, load_config
from rail.events.subscriptions import ALL
from rail.pki.clientevents import ClientEvents, EventSettingsError, check_event_settings
from rail.pki.operations import OperationError
from rail.pki.registry import Registry, RegistryError
from rail.shared.registry import registry_source

__all__ = [
    "add_client_commands",
    "add_issue_options",
    "check_events",
    "check_issue_events",
    "describe",
    "record_issue_events",
]

_NONE = "none"


def _allow_http_loopback(config: Config) -> bool:
    # As for --webhook: without allow_private Rail never POSTs to loopback.
    return config.webhooks.allow_http_loopback and config.webhooks.allow_private


def _types(values: Sequence[str] | None) -> list[str] | None:
    """``--events`` values (repeatable, comma-separated) as names; ``none`` is no type."""
    if values is None:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return [] if names == [_NONE] else names


def add_issue_options(parser: argparse.ArgumentParser) -> None:
    """``--events`` and ``--events-url`` on ``rail certs issue``."""
    parser.add_argument(
        "--events",
        action="append",
        metavar="TYPE[,TYPE]",
        help=f"event types this client gets ({ALL} for every type; see docs/events.md)",
    )
    parser.add_argument(
        "--events-url", metavar="URL", help="where events go (default: the --webhook URL)"
    )


def check_issue_events(config: Config, args: argparse.Namespace) -> tuple[str, ...]:
    """The checked ``--events`` of ``rail certs issue``, before anything is issued;
    :class:`OperationError` (exit 2) names each problem."""
    return check_events(config, args.events, args.events_url, args.webhook, args.admin)


def check_events(
    config: Config,
    events: Sequence[str] | None,
    events_url: str | None,
    webhook: str | None,
    admin: bool,
) -> tuple[str, ...]:
    """The checked event types of a certificate to issue (``--events`` values: each a
    comma-separated list; None when not given), as ``rail certs issue`` and the console
    check them; :class:`OperationError` names each problem."""
    types = _types(events)
    if types is not None and admin:
        raise OperationError(["--events: an admin certificate sends no mail; omit --events"])
    if types is None:
        if events_url is not None:
            raise OperationError(["--events-url: give --events too"])
        return ()
    try:
        return check_event_settings(
            types,
            events_url,
            webhook=webhook,
            allow_http_loopback=_allow_http_loopback(config),
        )
    except EventSettingsError as error:
        raise OperationError(error.problems) from None


def record_issue_events(
    config: Config, name: str, types: tuple[str, ...], url: str | None, now: datetime
) -> list[str]:
    """Store the checked settings of a certificate just issued; lines to print."""
    if not types:
        return []
    with registry_source(config).open() as registry:
        settings = _set(registry, name, types, url, now, _allow_http_loopback(config))
    return [f"  events   {describe(settings)}"]


def describe(settings: ClientEvents) -> str:
    """One line: the types and where they go."""
    if not settings.types:
        return "none"
    where = settings.url or "the certificate's webhook URL"
    return f"{', '.join(settings.types)} -> {where}"


def _set(
    registry: Registry,
    name: str,
    types: Sequence[str],
    url: str | None,
    now: datetime,
    allow_http_loopback: bool,
) -> ClientEvents:
    try:
        return registry.set_events(name, types, url, now, allow_http_loopback=allow_http_loopback)
    except EventSettingsError as error:
        raise OperationError(error.problems) from None


def _cmd_events(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    source = registry_source(config)
    if not source.exists():  # must not create a data directory
        raise RegistryError(f"{args.name!r}: no client certificate has this name")
    types = _types(args.events)
    if args.events_url is not None and args.no_events_url:
        raise OperationError(["--events-url and --no-events-url: give one"])
    with source.open() as registry:
        settings = registry.events_of(args.name)
        changing = types is not None or args.events_url is not None or args.no_events_url
        if changing:
            url = settings.url
            if args.events_url is not None:
                url = args.events_url
            elif args.no_events_url:
                url = None
            chosen = settings.types if types is None else types
            settings = _set(
                registry, args.name, chosen, url, datetime.now(UTC), _allow_http_loopback(config)
            )
    if args.json:
        print(
            json.dumps(
                {"client": settings.name, "types": list(settings.types), "url": settings.url}
            )
        )
    else:
        print(f"{settings.name}: {describe(settings)}")
        if changing:
            print("a running Rail applies it within a second")
    return 0


def add_client_commands(
    sub: Any, with_config: Callable[[argparse.ArgumentParser], None], parser_class: type
) -> None:
    """Register ``rail clients ...`` on the top-level subparsers ``sub``."""
    clients = sub.add_parser("clients", help="client settings in the registry").add_subparsers(
        dest="clients_command", metavar="COMMAND", parser_class=parser_class
    )
    clients.required = True
    p = clients.add_parser("events", help="show or set which events a client gets (docs/events.md)")
    with_config(p)
    p.add_argument("name", metavar="NAME", help="the client (certificate name)")
    p.add_argument(
        "--events",
        action="append",
        metavar="TYPE[,TYPE]",
        help=f"event types ({ALL} for every type, {_NONE} for none); replaces the current ones",
    )
    p.add_argument("--events-url", metavar="URL", help="where events go")
    p.add_argument(
        "--no-events-url",
        action="store_true",
        help="send events to the certificate's webhook URL again",
    )
    p.add_argument("--json", action="store_true", help="print the settings as JSON")
    p.set_defaults(func=_cmd_events)
