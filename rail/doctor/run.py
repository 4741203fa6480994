"""The doctor's run: every check for Rail's host and each local domain, in a stable
order, and the report as JSON-able data.

Glue between :mod:`rail.doctor.probe` (the questions) and :mod:`rail.doctor.checks`
(the verdicts). :func:`domains_report` is the whole run for the admin API; the
``rail doctor`` command uses :func:`diagnose` after reading its inputs itself.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.names import dns

from rail.config import Config
from rail.delivery.resolve import make_resolver, parse_resolv_conf
from rail.doctor.certificate import check_chain, check_expiry
from rail.doctor.checks import (
    FAIL,
    WARN,
    Check,
    Lookup,
    caa_identities,
    check_addresses,
    check_caa,
    check_dkim,
    check_dmarc,
    check_mta_sts_policy,
    check_mta_sts_txt,
    check_mx,
    check_port,
    check_ptr,
    check_spf,
    check_tls_rpt,
)
from rail.doctor.expected import DomainExpectation
from rail.doctor.inputs import Inputs, load_inputs
from rail.doctor.probe import (
    CAA_TYPE,
    DNS_TIMEOUT,
    Overrides,
    Probe,
    make_trust_root,
    reverse_name,
)

__all__ = ["diagnose", "domains_report", "report_json", "resolver_servers"]

RESOLV_CONF = "/etc/resolv.conf"
_PORT_WHAT = {"smtp": "an SMTP 220 greeting", "tls": "a TLS handshake"}


def resolver_servers(
    config: Config, resolver: tuple[str, int] | None
) -> Sequence[tuple[str, int]] | None:
    """Whom to ask: ``resolver`` (``--resolver``), else ``delivery.nameservers``, else
    ``inbound.nameservers``, else None: the system's ``/etc/resolv.conf``."""
    if resolver is not None:
        return [resolver]
    return config.delivery.nameservers or config.inbound.nameservers or None


async def _caa(probe: Probe, domain: str) -> tuple[Lookup[Any], str | None]:
    """The CAA record set that applies to ``domain``: the first found climbing towards
    the root (RFC 8659 §3), and where it was; the top-level domain is not asked."""
    name = domain
    while True:
        found = await probe.lookup(name, CAA_TYPE)
        if found.error is not None or found.records:
            return found, name
        parent = name.partition(".")[2]
        if "." not in parent:
            return found, None
        name = parent


async def _together(*coroutines: Coroutine[Any, Any, Any]) -> list[Any]:
    """The results of ``coroutines``, run at once, in their order."""
    results: list[Any] = await gatherResults(
        [Deferred.fromCoroutine(c) for c in coroutines], consumeErrors=True
    )
    return results


async def _domain(
    probe: Probe, inputs: Inputs, want: DomainExpectation, identities: tuple[str, ...] | None
) -> list[Check]:
    host = inputs.host
    domain = want.domain
    mx, txt, dmarc, sts, rpt, policy, (caa, owner), *dkim = await _together(
        probe.lookup(domain, dns.MX),
        probe.lookup(domain, dns.TXT),
        probe.lookup(f"_dmarc.{domain}", dns.TXT),
        probe.lookup(f"_mta-sts.{domain}", dns.TXT),
        probe.lookup(f"_smtp._tls.{domain}", dns.TXT),
        probe.fetch_policy(domain),
        _caa(probe, domain),
        *(probe.lookup(f"{selector}._domainkey.{domain}", dns.TXT) for selector, _ in want.dkim),
    )
    rows = [
        check_mx(domain, want.mx, mx),
        check_spf(domain, want.spf, [*host.ipv4, *host.ipv6], host.hostname, txt),
    ]
    for (selector, record), found in zip(want.dkim, dkim, strict=True):
        rows.append(check_dkim(domain, selector, record, found))
    if not want.dkim:
        rows.append(
            Check(
                "dkim",
                domain,
                WARN,
                "a key per algorithm",
                "no DKIM key yet (Rail creates them at start and at a domain's first message)",
            )
        )
    rows += [
        check_dmarc(domain, want.dmarc, dmarc),
        check_mta_sts_txt(domain, want.mta_sts, sts),
        check_mta_sts_policy(domain, host.policy, host.hostname, policy),
        check_tls_rpt(domain, want.tls_rpt, rpt),
        check_caa(domain, want.caa, identities, caa, owner),
    ]
    if want.bounce_domain is not None:
        # The return path's domain: bounces come back to Rail, SPF passes for it.
        bounces = want.bounce_domain
        bounce_mx, bounce_txt = await _together(
            probe.lookup(bounces, dns.MX), probe.lookup(bounces, dns.TXT)
        )
        addresses = [*host.ipv4, *host.ipv6]
        rows += [
            check_mx(bounces, want.bounce_mx, bounce_mx),
            check_spf(bounces, want.bounce_spf, addresses, host.hostname, bounce_txt),
        ]
    return rows


async def _ptr(probe: Probe, hostname: str, address: str) -> Check:
    names = await probe.lookup(reverse_name(address), dns.PTR)
    found = await _together(*(probe.addresses(name) for name in names.records))
    forward = [Lookup((*ipv4.records, *ipv6.records)) for ipv4, ipv6 in found]
    return check_ptr(address, hostname, names, forward)


def _certificate(inputs: Inputs) -> list[Check]:
    host = inputs.host
    name = host.hostname
    if not inputs.chain:
        return [
            Check("certificate", name, FAIL, "Rail's server certificate", inputs.certificate_source)
        ]
    return [
        check_expiry(name, inputs.chain[0], inputs.now, inputs.renew_before),
        check_chain(name, inputs.chain, inputs.trust, inputs.now, self_signed=host.self_signed),
    ]


async def _host(probe: Probe, inputs: Inputs) -> list[Check]:
    host = inputs.host
    name = host.hostname
    public = (*host.ipv4, *host.ipv6)
    leaf = inputs.chain[0] if inputs.chain else None
    targets = [(address, port, what) for address in public for port, what in host.ports]
    (ipv4, ipv6), ptrs, answers, dkim = await _together(
        probe.addresses(name),
        _together(*(_ptr(probe, name, address) for address in public)),
        _together(*(probe.port(address, port, what, leaf) for address, port, what in targets)),
        _together(
            *(probe.lookup(f"{selector}._domainkey.{name}", dns.TXT) for selector, _ in host.dkim)
        ),
    )
    rows = [
        check_addresses("a", name, host.ipv4, ipv4),
        check_addresses("aaaa", name, host.ipv6, ipv6),
        *ptrs,
        *(
            check_dkim(name, selector, record, found)
            for (selector, record), found in zip(host.dkim, dkim, strict=True)
        ),
        *_certificate(inputs),
    ]
    if not public:
        rows.append(
            Check("ports", name, WARN, "public addresses to probe", "dns.ipv4 and dns.ipv6 not set")
        )
    for (address, port, what), answer in zip(targets, answers, strict=True):
        rows.append(check_port(port, address, name, _PORT_WHAT[what], answer))
    return rows


async def diagnose(inputs: Inputs, probe: Probe) -> list[Check]:
    """Every check: the host's first, then each domain's, in the order of the inputs.
    Every question is asked at once (a silent resolver costs its timeout once, not once
    per question), except that the domains wait for the ACME directory when the CA's
    CAA identities come from it; the rows keep a fixed order."""
    host: Deferred[list[Check]] = Deferred.fromCoroutine(_host(probe, inputs))
    identities = inputs.host.acme_identities
    directory = inputs.host.acme_directory
    rows: list[Check] = []
    if identities == () and directory is not None:
        fetched = await probe.fetch_directory(directory, inputs.acme_trust)
        if fetched.text is not None:
            identities = caa_identities(fetched.text)
        else:
            rows.append(
                Check(
                    "acme directory",
                    inputs.host.hostname,
                    WARN,
                    directory,
                    f"fetch failed: {fetched.error} (CAA not checked against the CA)",
                )
            )
    domains: list[list[Check]] = await _together(
        *(_domain(probe, inputs, d, identities) for d in inputs.domains)
    )
    return [*(await host), *rows, *(row for part in domains for row in part)]


def report_json(checks: Sequence[Check]) -> dict[str, Any]:
    """The report as data: ``ok`` is false when any check FAILed."""
    counts = {status: 0 for status in ("OK", "WARN", "FAIL")}
    for check in checks:
        counts[check.status] += 1
    return {
        "ok": counts[FAIL] == 0,
        "counts": counts,
        "checks": [check.to_json() for check in checks],
    }


def _servers(config: Config) -> Sequence[tuple[str, int]]:
    """The configured resolvers, else the system's (reads ``/etc/resolv.conf``)."""
    servers = resolver_servers(config, None)
    if servers is not None:
        return servers
    try:
        text = Path(RESOLV_CONF).read_text(errors="replace")
    except OSError:
        text = ""
    return parse_resolv_conf(text)


async def _report(
    config: Config,
    reactor: Any,
    in_thread: Callable[[Callable[[], Any]], Deferred[Any]],
    domain: str | None,
    overrides: Overrides | None,
) -> dict[str, Any]:
    now = reactor.seconds()
    trust = None if overrides is None else overrides.trust

    def read() -> tuple[Inputs, Sequence[tuple[str, int]], Any]:
        inputs = load_inputs(config, now, domain, trust=trust)
        # The roots as TLS wants them, made here: it costs milliseconds, and without it a
        # TLS context would read the system's CA file on the reactor thread.
        root = make_trust_root(inputs.trust) if trust is None and inputs.trust else None
        return inputs, _servers(config), root

    inputs, servers, root = await in_thread(read)
    resolver = make_resolver(servers, reactor, timeout=DNS_TIMEOUT)
    probe = Probe(reactor, resolver, overrides, trust_root=root)
    try:
        checks = await diagnose(inputs, probe)
    finally:
        probe.close()
    return report_json(checks)


def domains_report(
    config: Config,
    reactor: Any,
    in_thread: Callable[[Callable[[], Any]], Deferred[Any]],
    *,
    domain: str | None = None,
    overrides: Overrides | None = None,
) -> Deferred[dict[str, Any]]:
    """The doctor's report for ``GET /api/v1/admin/domains``, as JSON-able data.

    ``in_thread`` runs every file and SQLite read (zones, DKIM keys, the certificate,
    the trust roots, ``/etc/resolv.conf``) off the reactor: the server passes
    ``lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f)``. Fails with
    :class:`~rail.doctor.inputs.DoctorError` when ``domain`` is not local or there is
    no local domain. Takes seconds (DNS, connections and a fetch per domain, each with a
    timeout): run one at a time.
    """
    return Deferred.fromCoroutine(_report(config, reactor, in_thread, domain, overrides))
