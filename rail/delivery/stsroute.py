"""The routing step under MTA-STS: each MX host of a route gets its TLS requirement.

:func:`apply_policy` is the decision (no I/O): every host gets the requirement
:func:`~rail.delivery.tlspolicy.choose_requirement` gives for the domain's policy, and in
``enforce`` mode the hosts the policy does not list are dropped (RFC 8461 §4.1); when
none is left the domain is deferred (``451 4.7.5``) rather than sent to an unlisted host.
:func:`policy_route` runs the MX lookup and the policy lookup side by side, so a cached
policy adds nothing to a delivery's routing time and a first lookup adds only what the
HTTPS fetch takes beyond the MX lookup.
"""

from __future__ import annotations

import attrs
import idna
from twisted.internet.defer import Deferred

from rail.delivery.mx import is_address_literal
from rail.delivery.outcome import Reply
from rail.delivery.resolve import Route, RouteError
from rail.delivery.stscache import CachedPolicy
from rail.delivery.tlspolicy import choose_requirement
from rail.delivery.tlsreport import DISCARD, TLSOutcomeSink, outcome_for

__all__ = ["apply_policy", "policy_domain", "policy_route"]


def policy_domain(domain: str) -> str | None:
    """The name whose MTA-STS policy applies to ``domain`` (lower-case A-label, as the
    MX lookup asks), or None for an address literal or a U-label IDNA refuses."""
    if is_address_literal(domain):
        return None
    name = domain.rstrip(".").lower()
    try:
        return name if name.isascii() else idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None


def apply_policy(
    route: Route,
    domain: str,
    cached: CachedPolicy | None,
    ca_file: str | None = None,
    outcomes: TLSOutcomeSink = DISCARD,
) -> Route:
    """``route`` with each host's TLS requirement; see the module docstring. Hosts an
    ``enforce`` policy excludes are reported (``validation-failure``)."""
    policy, ident = (cached.policy, cached.policy_id) if cached else (None, None)
    kept = []
    for host in route.hosts:
        requirement = choose_requirement(
            domain, host.name, sts=policy, sts_id=ident, ca_file=ca_file
        )
        if requirement.allows(host.name):
            kept.append(attrs.evolve(host, tls=requirement))
        else:
            reason = f"MX host {host.name} is not listed in the MTA-STS policy"
            outcomes.record(outcome_for(requirement, host.name, None, "validation-failure", reason))
    if not kept:
        names = ", ".join(h.name for h in route.hosts)
        text = f"MTA-STS policy of {domain} (enforce) lists none of its MX hosts ({names})"
        raise RouteError(Reply(451, "4.7.5", text[:300], remote=False))
    return attrs.evolve(route, hosts=tuple(kept))


async def policy_route(
    routing: Deferred[Route],
    policy: Deferred[CachedPolicy | None],
    domain: str,
    ca_file: str | None = None,
    outcomes: TLSOutcomeSink = DISCARD,
) -> Route:
    """The route of ``routing`` under the policy of ``policy``, both already started."""
    cached = await policy  # never fails
    route = await routing
    return apply_policy(route, domain, cached, ca_file, outcomes)
