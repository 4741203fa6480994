"""Which MX hosts of a route DANE applies to, from DNSSEC-validated look-ups (RFC 7672 §2.2).

Runs after the ordinary route look-up (:mod:`rail.delivery.resolve`) when
``delivery.dane`` is on, asking the validating resolver (:mod:`rail.delivery.dnssec`):

- the recipient domain's MX RRset: *insecure* (unsigned) means no DANE for any host,
  the route stands as it is (MTA-STS or opportunistic TLS then applies); *secure* means
  only the validated MX hosts may be used, so a route whose hosts came from a forged
  answer of a non-validating resolver is cut down to them (none left: deferred); a
  secure domain without MX records is its own host; a *failed* look-up (SERVFAIL for
  bogus data, or no answer) defers the domain, since DANE's absence cannot be proven;
- for each host of a secure MX RRset, its address records (RFC 7672 §2.2.2): TLSA
  records count only behind addresses that were themselves validated, so *insecure*
  address records leave the host to MTA-STS or opportunistic TLS, and a *failed*
  look-up makes the host unusable;
- for each host with secure addresses, the TLSA records at ``_25._tcp.<name>``: when
  the host name is a CNAME (validated, as the whole address answer was), first at the
  expanded name, then, if that gives no secure records, at the original name (RFC 7672
  §2.2.2), the certificate then matching either name (§3.2.2); a secure non-empty
  RRset makes the host ``dane`` (TLS required, the chain checked against the records;
  an RRset with no usable record still requires TLS, RFC 7672 §2.2); secure "no
  records" or insecure leaves the host to MTA-STS or opportunistic TLS; a failed
  look-up makes the host unusable (RFC 7672 §2.2.1), and if every host is, the domain
  is deferred.

Rail still connects to the addresses the ordinary route look-up found; those the
validating resolver gave are only judged for their security. A forged address cannot
pass the TLSA check, it can only make delivery fail, as it could without DANE.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import attrs
from twisted.internet.defer import Deferred, gatherResults

from rail.delivery.dnssec import SecureAnswer, mx_hosts, tlsa_records
from rail.delivery.outcome import Reply
from rail.delivery.resolve import Route, RouteError
from rail.delivery.stsroute import policy_domain
from rail.delivery.tlspolicy import DANEResult, choose_requirement
from rail.delivery.tlsreport import DISCARD, TLSOutcome, TLSOutcomeSink

__all__ = ["DaneRoute", "SecureLookups", "dane_route", "with_dane"]


class SecureLookups(Protocol):
    """What :func:`dane_route` asks (:class:`rail.delivery.dnssec.DaneResolver`)."""

    def mx(self, domain: str) -> Deferred[SecureAnswer]: ...
    def address(self, host: str) -> Deferred[SecureAnswer]: ...
    def tlsa(self, host: str, port: int = 25) -> Deferred[SecureAnswer]: ...


@attrs.frozen
class DaneRoute:
    """The route to use and the DANE result of each host DANE applies to."""

    route: Route
    dane: Mapping[str, DANEResult] = attrs.field(factory=dict)


def _defer(text: str) -> RouteError:
    return RouteError(Reply(451, "4.4.3", text, remote=False))


@attrs.frozen
class _HostDane:
    """What DNSSEC says about one MX host: ``failure`` (unusable), else its DANE result
    (None: DANE does not apply)."""

    dane: DANEResult | None = None
    failure: str | None = None


async def _host_dane(resolver: SecureLookups, host: str) -> _HostDane:
    name = host.lower().rstrip(".")
    addresses = await resolver.address(name)
    if addresses.status == "failed":
        return _HostDane(failure=f"address records: {addresses.reason}")
    if addresses.status == "insecure":
        return _HostDane()  # RFC 7672 §2.2.2: no DANE behind insecure addresses
    expanded = addresses.name or name
    candidates = (expanded, name) if expanded != name else (name,)
    for candidate in candidates:
        answer = await resolver.tlsa(candidate)
        if answer.status == "failed":
            return _HostDane(failure=answer.reason)
        records = tlsa_records(answer) if answer.status == "secure" else ()
        if records:
            return _HostDane(
                DANEResult(
                    tlsa=records,
                    # the TLSA base domain first: SNI (RFC 7672 §8.1)
                    names=(candidate, *(c for c in candidates if c != candidate)),
                    policy_strings=tuple(str(record) for record in records),
                )
            )
    return _HostDane()


async def _dane_route(resolver: SecureLookups, domain: str, route: Route) -> DaneRoute:
    name = domain.lower().rstrip(".")
    mx = await resolver.mx(name)
    if mx.status == "failed":
        raise _defer(f"DNSSEC look-up of the MX of {domain} failed: {mx.reason}")
    if mx.status == "insecure":
        return DaneRoute(route)
    secure_hosts = set(mx_hosts(mx)) or {name}
    hosts = tuple(h for h in route.hosts if h.name.lower().rstrip(".") in secure_hosts)
    if not hosts:
        raise _defer(f"no route host of {domain} is in its DNSSEC-validated MX records")
    answers = await gatherResults(
        [Deferred.fromCoroutine(_host_dane(resolver, host.name)) for host in hosts],
        consumeErrors=True,
    )
    dane: dict[str, DANEResult] = {}
    usable = []
    failures = []
    for host, answer in zip(hosts, answers, strict=True):
        if answer.failure is not None:
            failures.append(f"{host.name}: {answer.failure}")
            continue
        usable.append(host)
        if answer.dane is not None:
            dane[host.name] = answer.dane
    if not usable:
        raise _defer(f"DNSSEC look-ups for the mail hosts of {domain} failed ({failures[0]})")
    return DaneRoute(Route(tuple(usable), route.port), dane)


def dane_route(resolver: SecureLookups, domain: str, route: Route) -> Deferred[DaneRoute]:
    """``route`` (from the ordinary look-up of ``domain``) checked with DNSSEC as the
    module docstring says; fails with :class:`RouteError` (``451 4.4.3``) to defer."""
    return Deferred.fromCoroutine(_dane_route(resolver, domain, route))


async def _with_dane(
    routing: Deferred[Route], resolver: SecureLookups, domain: str, outcomes: TLSOutcomeSink
) -> Route:
    route = await routing
    name = policy_domain(domain)
    if name is None:  # an address literal: no DNS, no DANE
        return route
    try:
        checked = await dane_route(resolver, name, route)
    except RouteError as error:
        outcomes.record(
            TLSOutcome(
                policy_domain=name,
                policy_type="tlsa",
                result="dnssec-invalid",
                failure_reason=error.reply.text,
            )
        )
        raise
    hosts = []
    for host in checked.route.hosts:
        dane = checked.dane.get(host.name)
        if dane is not None:
            requirement = choose_requirement(name, host.name, sts=None, dane=dane)
            host = attrs.evolve(host, tls=requirement)
        hosts.append(host)
    return attrs.evolve(checked.route, hosts=tuple(hosts))


def with_dane(
    route: Callable[[str], Deferred[Route]],
    resolver: SecureLookups,
    outcomes: TLSOutcomeSink = DISCARD,
) -> Callable[[str], Deferred[Route]]:
    """``route`` (the MX route with MTA-STS requirements) followed by the DANE step:
    hosts with TLSA records get a ``dane`` requirement, replacing MTA-STS's or
    opportunistic TLS (RFC 8461 §2); a failed DNSSEC look-up defers and is reported
    (``dnssec-invalid``)."""

    def routed(domain: str) -> Deferred[Route]:
        return Deferred.fromCoroutine(_with_dane(route(domain), resolver, domain, outcomes))

    return routed
