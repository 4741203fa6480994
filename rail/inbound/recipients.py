"""Which application receives mail for an address on port 25, or why nobody does.

Pure: :class:`RecipientTable` is a snapshot of what routing needs (local domains, the
exact addresses of valid certificates, the configured routes, the clients that can take
a webhook), built by :func:`recipient_table`; :func:`route_recipient` decides one RCPT.

Rail is never an open relay: the decision is taken on the final domain only, and every
address form that asks a mail system to relay further (``%`` hacks, bang paths, quoted
local parts holding an ``@``, address literals) is refused like any other non-local
address (``550 5.7.1``), whatever the peer: loopback peers are not trusted either. Source
routes (``<@a,@b:user@domain>``) never reach this module: the command parser drops them
(RFC 5321 §4.1.1.3 and appendix C), so only their final mailbox is judged.

Routing order (RAIL.md §5): ``postmaster@`` any local domain (or Rail's own host name)
goes to ``inbound.postmaster`` when it can take mail; then the exact email SAN of a valid
certificate whose client has a webhook (local part exact, domain in any case); then the
configured routes, first match wins. An address that valid certificates of several
clients list (issued with ``--allow-shared-address``, or from before that was refused)
belongs to the client whose certificate listing it was issued first
(:mod:`rail.pki.ownership`); :func:`routing_problems` names each such address. A route
whose client has no valid certificate with a webhook cannot deliver: its addresses are
refused ``550 5.1.1`` (and :func:`routing_problems` says so, for the start-up log).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Literal

import attrs

from rail.config.schema import Config, InboundRoute
from rail.dkim.domains import local_domains
from rail.dkim.names import a_label
from rail.inbound.model import WebhookTarget
from rail.pki.ownership import AddressConflict, address_conflicts, address_key, valid_in_issue_order
from rail.pki.registry import CertificateRecord
from rail.policy.verdict import Reject

__all__ = [
    "RELAY_DENIED",
    "USER_UNKNOWN",
    "RecipientTable",
    "Refusal",
    "Route",
    "recipient_table",
    "route_recipient",
    "routing_problems",
    "webhook_targets",
]

RELAY_DENIED = Reject(550, "5.7.1", "Relay access denied")
USER_UNKNOWN = Reject(550, "5.1.1", "User unknown")

# Characters that make some mail systems relay the local part onward: the "percent hack"
# (user%host@relay), UUCP bang paths (host!user@relay) and an "@" inside a quoted string.
_RELAY_CHARACTERS = ("%", "!", "@")

RefusalReason = Literal["relay", "relay-syntax", "unknown", "no-webhook"]


@attrs.frozen
class Route:
    """Mail for the address goes to ``client``'s webhook ``url`` (both None for a route
    that only forwards), and is re-sent to the ``forward`` addresses; ``index`` is the
    matching entry of ``inbound.routes`` (None for a certificate's own address)."""

    client: str | None
    url: str | None
    forward: tuple[str, ...] = ()
    index: int | None = None


@attrs.frozen
class Refusal:
    """The address is refused with ``reject``; ``reason`` is for the log only:
    ``relay`` (not a local domain), ``relay-syntax`` (a relay hack or address literal),
    ``unknown`` (no route) or ``no-webhook`` (the route's client cannot take mail)."""

    reject: Reject
    reason: RefusalReason
    client: str | None = None


@attrs.frozen
class _CompiledRoute:
    route: InboundRoute
    pattern: re.Pattern[str] | None
    local: str | None
    domain: str | None

    def matches(self, local: str, domain: str) -> bool:
        if self.pattern is not None:
            return self.pattern.fullmatch(f"{local}@{domain}") is not None
        if self.local != "*" and self.local != local:
            return False
        return self.domain == domain


def _compile(route: InboundRoute) -> _CompiledRoute:
    if route.match.startswith("regex:"):
        return _CompiledRoute(route, re.compile(route.match[6:]), None, None)
    local, _, domain = route.match.rpartition("@")
    return _CompiledRoute(route, None, local, a_label(domain) or domain.lower())


@attrs.frozen
class RecipientTable:
    """Everything :func:`route_recipient` needs, at one moment.

    ``addresses`` maps (local part, lower-case A-label domain) of valid certificates'
    email SANs to their client, when that client can take mail; ``webhooks`` maps each
    client with a valid certificate that names a webhook to its URL (the most recently
    issued such certificate's); ``conflicts`` lists addresses several clients hold.
    """

    hostname: str
    local_domains: frozenset[str]
    addresses: Mapping[tuple[str, str], str] = attrs.field(factory=dict)
    webhooks: Mapping[str, str] = attrs.field(factory=dict)
    routes: tuple[InboundRoute, ...] = ()
    postmaster: str | None = None
    conflicts: tuple[AddressConflict, ...] = ()
    _compiled: tuple[_CompiledRoute, ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_compiled", tuple(_compile(r) for r in self.routes))

    @property
    def compiled_routes(self) -> tuple[_CompiledRoute, ...]:
        return self._compiled


def recipient_table(
    config: Config, records: Iterable[CertificateRecord], now: datetime
) -> RecipientTable:
    """The table for ``config`` and the registry ``records`` (any order, any status:
    only those valid at ``now`` count). An address belongs to the client whose valid
    certificate listing it was issued first; that client's mail goes to the webhook of
    its most recently issued valid certificate that names one (a rotation may move it)."""
    valid = valid_in_issue_order(records, now)
    owners: dict[tuple[str, str], str] = {}
    webhooks: dict[str, str] = {}
    for record in valid:
        if record.webhook is not None:
            webhooks[record.name] = record.webhook
        for sender in record.senders:
            owners.setdefault(address_key(sender), record.name)
    addresses = {key: client for key, client in owners.items() if client in webhooks}
    return RecipientTable(
        hostname=config.hostname.lower(),
        local_domains=frozenset(local_domains(config, valid, now)),
        addresses=addresses,
        webhooks=webhooks,
        routes=config.inbound.routes,
        postmaster=config.inbound.postmaster,
        conflicts=tuple(address_conflicts(valid, now)),
    )


def _relay_syntax(local: str, domain: str) -> bool:
    if domain.startswith("["):
        return True
    return any(c in local for c in _RELAY_CHARACTERS)


def _to(table: RecipientTable, client: str) -> Route | Refusal:
    url = table.webhooks.get(client)
    if url is None:
        return Refusal(USER_UNKNOWN, "no-webhook", client)
    return Route(client, url)


def _routed(table: RecipientTable, route: InboundRoute, index: int) -> Route | Refusal:
    """A configured route: its client's webhook, its forward addresses, or both. A
    forwarding route whose client cannot take mail still forwards."""
    if not route.forward:
        assert route.client is not None  # parse_config: client or forward
        return _to(table, route.client)
    url = table.webhooks.get(route.client) if route.client is not None else None
    return Route(route.client if url else None, url, route.forward, index)


def route_recipient(table: RecipientTable, address: str) -> Route | Refusal:
    """Where mail for ``address`` (a RCPT path as the parser returns it) goes."""
    local, at, raw_domain = address.rpartition("@")
    if not at or _relay_syntax(local, raw_domain):
        return Refusal(RELAY_DENIED, "relay-syntax")
    domain = a_label(raw_domain)
    if domain is None:
        return Refusal(RELAY_DENIED, "relay")
    postmaster = local.lower() == "postmaster"
    if domain not in table.local_domains and not (postmaster and domain == table.hostname):
        return Refusal(RELAY_DENIED, "relay")
    if postmaster and table.postmaster is not None and table.postmaster in table.webhooks:
        return _to(table, table.postmaster)
    client = table.addresses.get((local, domain))
    if client is None and postmaster:
        client = table.addresses.get(("postmaster", domain))
    if client is not None:
        return _to(table, client)
    for index, compiled in enumerate(table.compiled_routes):
        if compiled.matches(local, domain) or (
            postmaster and compiled.matches("postmaster", domain)
        ):
            return _routed(table, compiled.route, index)
    return Refusal(USER_UNKNOWN, "unknown")


def webhook_targets(routed: Sequence[tuple[str, Route]]) -> tuple[WebhookTarget, ...]:
    """One target per client, in the order of each client's first recipient, with its
    recipients in RCPT order (routes that only forward have none)."""
    urls: dict[str, str] = {}
    recipients: dict[str, list[str]] = {}
    for address, route in routed:
        if route.client is None or route.url is None:
            continue
        urls.setdefault(route.client, route.url)
        recipients.setdefault(route.client, []).append(address)
    return tuple(
        WebhookTarget(client=client, url=urls[client], recipients=tuple(addresses))
        for client, addresses in recipients.items()
    )


def routing_problems(table: RecipientTable) -> list[str]:
    """What an operator should hear about at start-up and after each refresh: routes
    and a postmaster client that cannot deliver, and local domains whose postmaster has
    nowhere to go (such mail is refused ``550 5.1.1``)."""
    problems: list[str] = []
    for index, route in enumerate(table.routes):
        if route.client is not None and route.client not in table.webhooks:
            problems.append(
                f"inbound.routes[{index}]: client {route.client!r} has no valid certificate"
                " with a webhook; "
                + (
                    "this route only forwards"
                    if route.forward
                    else "mail for these addresses is refused"
                )
            )
    if table.postmaster is not None and table.postmaster not in table.webhooks:
        problems.append(
            f"inbound.postmaster: client {table.postmaster!r} has no valid certificate"
            " with a webhook; postmaster mail follows the routes"
        )
    for conflict in table.conflicts:
        owner = conflict.owner
        where = (
            f"its mail goes to {owner!r}"
            if owner in table.webhooks
            else f"{owner!r} has no webhook, so its mail follows the routes"
        )
        problems.append(
            f"{conflict.address} is in valid certificates of more than one client"
            f" ({conflict.describe()}); it belongs to {owner!r}, issued first: {where}"
        )
    domains = sorted(table.local_domains | {table.hostname})
    lost = [d for d in domains if not isinstance(route_recipient(table, f"postmaster@{d}"), Route)]
    if lost:
        problems.append(
            "no route for postmaster@ in " + ", ".join(lost) + "; set inbound.postmaster"
        )
    return problems
