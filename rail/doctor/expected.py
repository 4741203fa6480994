"""What Rail would publish, per local domain and for its host, as the doctor compares it.

Pure. Every value is read out of the records :func:`rail.dns.zone.domain_records` builds
(the zones Rail serves, and that ``rail dns records`` prints), never re-derived, so the
doctor and the DNS server cannot disagree about what is right.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import attrs

from rail.config import Config
from rail.config.bouncedomain import bounce_domain
from rail.dns.mtasts import policy_text
from rail.dns.records import AAAA, CAA, MX, TXT, A, Record
from rail.dns.zone import domain_records

__all__ = ["DomainExpectation", "HostExpectation", "domain_expectation", "host_expectation"]


@attrs.frozen
class DomainExpectation:
    """One local domain's records, as Rail would serve them."""

    domain: str
    mx: tuple[MX, ...]
    spf: str
    dkim: tuple[tuple[str, str], ...]
    """``(selector, record)`` for every key Rail publishes, oldest generation first."""
    dmarc: str
    mta_sts: str
    tls_rpt: str | None
    caa: tuple[CAA, ...]
    bounce_domain: str | None = None
    """The domain's bounce domain (``bounces.domain``), when return paths are on and Rail
    serves it; its MX and SPF record follow."""
    bounce_mx: tuple[MX, ...] = ()
    bounce_spf: str = ""


@attrs.frozen
class HostExpectation:
    """Rail's host: its name and addresses, certificate and MTA-STS policy settings."""

    hostname: str
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    policy: str
    """The MTA-STS policy file Rail serves (the same for every domain)."""
    acme_identities: tuple[str, ...] | None
    """With ACME: the CA's CAA identities (``dns.caa``; empty when not set, and then the
    ACME directory's ``caaIdentities`` are asked for). None when Rail does not use ACME."""
    acme_directory: str | None
    """The ACME directory URL; None without ACME."""
    renew_before: float | None
    """ACME's ``renew_before``, seconds; None without ACME."""
    self_signed: bool
    dkim: tuple[tuple[str, str], ...]
    """The host name's own DKIM keys (DSNs are signed with them), when its zone is among
    those checked: Rail publishes them only in the local domain that contains it."""
    ports: tuple[tuple[int, str], ...]
    """The public ports to probe and what each should answer: ``smtp`` (a ``220``
    greeting) or ``tls`` (a handshake); only for listeners that are configured."""


def _texts(records: Iterable[Record], name: str) -> list[str]:
    return ["".join(r.data.strings) for r in records if r.name == name and isinstance(r.data, TXT)]


def _first(texts: Sequence[str], prefix: str) -> str:
    return next((t for t in texts if t.startswith(prefix)), "")


def _dkim(records: Iterable[Record], domain: str) -> tuple[tuple[str, str], ...]:
    """``(selector, record)`` of the DKIM keys published for ``domain``."""
    suffix = f"._domainkey.{domain}"
    return tuple(
        (r.name[: -len(suffix)], "".join(r.data.strings))
        for r in records
        if r.name.endswith(suffix) and "." not in r.name[: -len(suffix)] and isinstance(r.data, TXT)
    )


def domain_expectation(
    domain: str, records: Sequence[Record], bounce_template: str | None = None
) -> DomainExpectation:
    """The expectation for ``domain`` from the records of the zones (every zone's
    records, or at least those of ``domain``'s zone and the zones below it); with
    ``bounce_template``, its bounce domain's too, if the zones publish it."""
    dkim = _dkim(records, domain)
    bounces = None if bounce_template is None else bounce_domain(bounce_template, domain)
    bounce_mx = tuple(r.data for r in records if r.name == bounces and isinstance(r.data, MX))
    tls_rpt = _texts(records, f"_smtp._tls.{domain}")
    return DomainExpectation(
        domain=domain,
        mx=tuple(r.data for r in records if r.name == domain and isinstance(r.data, MX)),
        spf=_first(_texts(records, domain), "v=spf1"),
        dkim=dkim,
        dmarc=_first(_texts(records, f"_dmarc.{domain}"), "v=DMARC1"),
        mta_sts=_first(_texts(records, f"_mta-sts.{domain}"), "v=STSv1"),
        tls_rpt=tls_rpt[0] if tls_rpt else None,
        caa=tuple(r.data for r in records if r.name == domain and isinstance(r.data, CAA)),
        bounce_domain=bounces if bounce_mx else None,
        bounce_mx=bounce_mx,
        bounce_spf=_first(_texts(records, bounces), "v=spf1") if bounce_mx and bounces else "",
    )


def host_expectation(config: Config, records: Sequence[Record] = ()) -> HostExpectation:
    """Rail's host as its configuration describes it; its addresses are those its zone
    would hold were the host name a zone of its own (the same whether or not it lies in
    a local domain). Its DKIM keys are those among ``records`` (the zones checked)."""
    hostname, dns = config.hostname, config.dns
    own: Mapping[str, list[Record]] = domain_records(
        [hostname], hostname, dns, {}, nodes=config.dns.nodes
    )
    at_host = [r for r in own[hostname] if r.name == hostname]
    acme = config.tls.acme
    listen = config.listen
    ports = [
        (port, what)
        for port, what, spec in (
            (25, "smtp", listen.inbound),
            (465, "tls", listen.submission),
            (443, "tls", listen.https),
        )
        if spec is not None
    ]
    return HostExpectation(
        hostname=hostname,
        ipv4=tuple(r.data.address for r in at_host if isinstance(r.data, A)),
        ipv6=tuple(r.data.address for r in at_host if isinstance(r.data, AAAA)),
        policy=policy_text(dns.mta_sts_mode, hostname, dns.mta_sts_max_age),
        acme_identities=None if acme is None else tuple(dns.caa),
        acme_directory=None if acme is None else acme.directory,
        renew_before=None if acme is None else acme.renew_before,
        self_signed=config.tls.mode == "self_signed",
        dkim=_dkim(records, hostname),
        ports=tuple(ports),
    )
