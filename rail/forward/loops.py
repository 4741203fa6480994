"""Forward targets that must not be: those that come back to Rail.

Pure. A forward address in one of Rail's local domains (or its host name) either routes
back to Rail, a loop that would bounce mail between Rail and itself until a hop limit
stops it, or is taken by no route, so Rail would refuse the mail it sent itself. Both are
refused by ``rail config-check`` and at start-up; forwarding is for mailboxes elsewhere.
"""

from __future__ import annotations

from rail.dkim.names import a_label
from rail.inbound.recipients import RecipientTable, Route, route_recipient

__all__ = ["forward_problems"]


def forward_problems(table: RecipientTable) -> list[str]:
    """One line per forward target of ``table``'s routes that is in a local domain,
    naming it by its configuration path."""
    problems: list[str] = []
    for index, route in enumerate(table.routes):
        for number, target in enumerate(route.forward):
            domain = a_label(target.rpartition("@")[2])
            if domain is None or (domain not in table.local_domains and domain != table.hostname):
                continue
            where = f"inbound.routes[{index}].forward[{number}]"
            if isinstance(route_recipient(table, target), Route):
                problems.append(f"{where}: {target} routes back to Rail (a forwarding loop)")
            else:
                problems.append(
                    f"{where}: {target} is in Rail's local domain {domain} but no route"
                    " takes it; forward only to mailboxes elsewhere"
                )
    return problems
