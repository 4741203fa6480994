"""``rail suppressions``: a client's suppression list, through the running server's admin
API (``/api/v1/admin/suppressions?client=NAME``), as ``rail queue`` does.

Like ``rail queue``, the command never opens the queue database: the server's writer
applies every change, so an address added here is checked by the very next send. The
server, its certificate and the admin certificate are found as for ``rail queue``
(:mod:`rail.queuecli`). Exit codes: 0 done; 1 refused or failed (not listed,
unreachable, 5xx); 2 usage (bad arguments, or a 400 from the server).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from rail.queuecli import AdminAPI, admin_api_arguments, admin_command

__all__ = ["add_suppression_commands"]

_PAGE = 500
_BASE = "/api/v1/admin/suppressions"


def _path(args: argparse.Namespace, address: str | None = None, **params: str) -> str:
    where = _BASE if address is None else f"{_BASE}/{quote(address, safe='@')}"
    return where + "?" + urlencode({"client": args.client, **params})


def _cmd_list(api: AdminAPI, args: argparse.Namespace) -> int:
    params = {k: v for k, v in (("q", args.search), ("prefix", args.prefix)) if v is not None}
    entries: list[dict[str, Any]] = []
    cursor = args.cursor
    while len(entries) < args.limit:
        query = dict(params, limit=str(min(_PAGE, args.limit - len(entries))))
        if cursor is not None:
            query["cursor"] = cursor
        page = api.call("GET", _path(args, **query))
        entries.extend(page["suppressions"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    if args.json:
        print(json.dumps({"suppressions": entries, "next_cursor": cursor}, indent=2))
        return 0
    rows = [("ADDRESS", "REASON", "SOURCE", "SINCE", "MESSAGE", "DETAIL")]
    rows += [
        (
            e["address"],
            e["reason"],
            e["source"],
            e["created_at"],
            e["message_id"] or "-",
            e["detail"] or "",
        )
        for e in entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join([*(c.ljust(widths[i]) for i, c in enumerate(row[:-1])), row[-1]]))
    if cursor is not None:
        sys.stderr.write(
            f"rail: more entries: rail suppressions list --client {args.client} --cursor {cursor}\n"
        )
    return 0


def _cmd_show(api: AdminAPI, args: argparse.Namespace) -> int:
    entry = api.call("GET", _path(args, args.address))
    print(json.dumps(entry, indent=2))
    return 0


def _cmd_add(api: AdminAPI, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"address": args.address, "source": "cli"}
    if args.reason is not None:
        body["reason"] = args.reason
    entry = api.call("POST", _path(args), body)
    if args.json:
        print(json.dumps(entry, indent=2))
    else:
        print(f"{entry['address']}: suppressed for {args.client} since {entry['created_at']}")
    return 0


def _cmd_remove(api: AdminAPI, args: argparse.Namespace) -> int:
    document = api.call("DELETE", _path(args, args.address))
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(f"{document['address']}: removed from {args.client}'s list")
    return 0


def _run(command: Callable[[AdminAPI, argparse.Namespace], int]) -> Callable[..., int]:
    return admin_command("suppressions", command)


def add_suppression_commands(
    sub: Any, with_config: Callable[[argparse.ArgumentParser], None], parser_class: type
) -> None:
    """Register ``rail suppressions ...`` on the top-level subparsers ``sub``."""
    commands = sub.add_parser(
        "suppressions", help="a client's suppression list (admin API)"
    ).add_subparsers(dest="suppressions_command", metavar="COMMAND", parser_class=parser_class)
    commands.required = True

    def common(p: argparse.ArgumentParser) -> None:
        admin_api_arguments(p, with_config)
        p.add_argument("--client", required=True, help="the client whose list this is")

    p = commands.add_parser("list", help="list entries, newest first")
    common(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--search", metavar="TEXT", help="addresses containing TEXT")
    group.add_argument("--prefix", metavar="TEXT", help="addresses starting with TEXT")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.add_argument("--cursor", help="go on from a previous listing")
    p.set_defaults(func=_run(_cmd_list))

    p = commands.add_parser("show", help="one address's entry")
    common(p)
    p.add_argument("address")
    p.set_defaults(func=_run(_cmd_show))

    p = commands.add_parser("add", help="suppress an address (reason manual)")
    common(p)
    p.add_argument("address")
    p.add_argument("--reason", help="kept with the entry as its detail")
    p.set_defaults(func=_run(_cmd_add))

    p = commands.add_parser("remove", help="take an address off the list")
    common(p)
    p.add_argument("address")
    p.set_defaults(func=_run(_cmd_remove))
