"""The records Rail publishes for each local domain, built from plain inputs.

Each local domain is a zone: SOA, NS, MX 10 to ``hostname`` (to every node of
``dns.nodes``, at equal preference, when several nodes share one database), SPF,
DMARC, MTA-STS and TLS-RPT records, CAA, the DKIM keys in use, the MX and SPF of its bounce domain
(``bounces.<domain>``), and the addresses of ``hostname``, ``mta-sts.<domain>`` and in-zone
name servers. A name that lies in several zones (nested
local domains) belongs to the most specific one. The SOA serial comes from
:mod:`rail.dns.serial`: callers hash the content with :func:`digest`, get a serial, and
then make the :class:`Zone`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

import attrs

from rail.config.bouncedomain import bounce_domain
from rail.config.schema import DNS, ClusterNode
from rail.dkim.records import PublishedKey, record_name, txt_strings
from rail.dns.mtasts import policy_id, policy_text
from rail.dns.records import AAAA, CAA, MX, NS, SOA, TXT, A, RData, Record, in_zone

__all__ = ["Zone", "build_zones", "digest", "domain_records", "make_zone", "published_hosts"]

# SOA timers: only secondaries (which Rail does not feed; AXFR is refused) read them.
_REFRESH = 3600
_RETRY = 900
_EXPIRE = 14 * 24 * 3600


@attrs.frozen
class Zone:
    """One zone: its origin and records, the SOA first."""

    origin: str
    records: tuple[Record, ...]

    @property
    def soa(self) -> Record:
        return self.records[0]

    @property
    def serial(self) -> int:
        data = self.soa.data
        assert isinstance(data, SOA)
        return data.serial


def _ttl(config: DNS) -> int:
    return max(int(config.ttl), 0)


def _owner(name: str, origins: Sequence[str]) -> str | None:
    """The most specific zone ``name`` belongs to."""
    best = None
    for origin in origins:
        if in_zone(name, origin) and (best is None or len(origin) > len(best)):
            best = origin
    return best


def _spf(config: DNS, hosts: Sequence[ClusterNode]) -> str:
    parts = ["v=spf1", "mx"]
    parts += [f"ip4:{address}" for host in hosts for address in host.ipv4]
    parts += [f"ip6:{address}" for host in hosts for address in host.ipv6]
    parts += list(config.spf_include)
    parts.append("-all")
    return " ".join(parts)


def _dmarc(config: DNS) -> str:
    value = f"v=DMARC1; p={config.dmarc_policy}"
    if config.dmarc_rua is not None:
        value += f"; rua={config.dmarc_rua}"
    return value


def _txt(text: str) -> TXT:
    return TXT(tuple(txt_strings(text)))


def _addresses(hosts: Sequence[ClusterNode]) -> list[RData]:
    return [
        *(A(a) for host in hosts for a in host.ipv4),
        *(AAAA(a) for host in hosts for a in host.ipv6),
    ]


def published_hosts(
    hostname: str, config: DNS, nodes: Sequence[ClusterNode] = ()
) -> tuple[ClusterNode, ...]:
    """The hosts the zone names as mail servers: ``dns.nodes`` when set, else
    ``hostname`` with ``dns.ipv4`` and ``dns.ipv6``."""
    if nodes:
        return tuple(nodes)
    return (ClusterNode(hostname=hostname, ipv4=config.ipv4, ipv6=config.ipv6),)


def _nameservers(hostname: str, config: DNS) -> tuple[str, ...]:
    return config.nameservers or (hostname,)


def domain_records(
    origins: Sequence[str],
    hostname: str,
    config: DNS,
    keys: Mapping[str, Sequence[PublishedKey]],
    bounce_template: str | None = None,
    nodes: Sequence[ClusterNode] = (),
) -> dict[str, list[Record]]:
    """Every zone's records except the SOA, by origin, in a stable order.

    ``nodes`` are ``dns.nodes``: each is an MX target (preference 10, so senders
    spread over them), has its addresses published, and SPF covers them all; without
    them, ``hostname`` with ``config.ipv4``/``ipv6`` is the one node.

    With ``bounce_template`` (``bounces.domain`` when ``bounces.enabled``), each local
    domain's bounce domain gets an MX to ``hostname`` (its bounces come back to Rail) and
    the domain's own SPF record (mail with a return path there passes SPF and, under
    relaxed DMARC alignment, aligns with the From domain), when it lies in a zone Rail
    serves.

    ``origins`` are the local domains; ``keys`` maps each domain that signs (the local
    domains and ``hostname``) to its published DKIM keys. In-zone name servers other
    than ``hostname`` get ``hostname``'s addresses: Rail serves the zone, so a name
    server named inside it is Rail.
    """
    ttl = _ttl(config)
    result: dict[str, list[Record]] = {origin: [] for origin in origins}
    hosts = published_hosts(hostname, config, nodes)
    spf = _txt(_spf(config, hosts))

    def add(name: str, data: RData) -> None:
        origin = _owner(name, origins)
        if origin is not None:
            result[origin].append(Record(name, ttl, data))

    policy = policy_text(config.mta_sts_mode, hostname, config.mta_sts_max_age)
    for origin in origins:
        for target in _nameservers(hostname, config):
            result[origin].append(Record(origin, ttl, NS(target)))
        result[origin].extend(Record(origin, ttl, MX(10, host.hostname)) for host in hosts)
        result[origin].append(Record(origin, ttl, spf))
        result[origin].extend(Record(origin, ttl, CAA(0, "issue", ca)) for ca in config.caa)
        add(f"_dmarc.{origin}", _txt(_dmarc(config)))
        add(f"_mta-sts.{origin}", _txt(f"v=STSv1; id={policy_id(policy)}"))
        for data in _addresses(hosts):  # any node serves the policy on 443
            add(f"mta-sts.{origin}", data)
        if config.tls_rpt is not None:
            add(f"_smtp._tls.{origin}", _txt(f"v=TLSRPTv1; rua={config.tls_rpt}"))
        if bounce_template is not None:
            bounces = bounce_domain(bounce_template, origin)
            for host in hosts:
                add(bounces, MX(10, host.hostname))
            add(bounces, spf)
    for host in hosts:
        for data in _addresses([host]):
            add(host.hostname, data)
    named = {host.hostname for host in hosts}
    for server in dict.fromkeys(_nameservers(hostname, config)):
        if server not in named:  # every node serves the zones
            for data in _addresses(hosts):
                add(server, data)
    for host in hosts:
        if _owner(host.hostname, origins) not in (None, host.hostname):
            # The HELO identity of Rail's own mail (and DSNs) is checked by SPF too.
            add(host.hostname, _txt("v=spf1 a -all"))
    for domain, published in sorted(keys.items()):
        for key in published:
            add(record_name(key.selector, domain).rstrip("."), _txt(key.txt))
    return result


def digest(records: Iterable[Record]) -> str:
    """A hash of a zone's content (SOA excluded), for the serial."""
    hashed = hashlib.sha256()
    for record in sorted(repr(r) for r in records):
        hashed.update(record.encode("utf-8"))
        hashed.update(b"\n")
    return hashed.hexdigest()


def make_zone(
    origin: str, records: Sequence[Record], serial: int, hostname: str, config: DNS
) -> Zone:
    """The zone with its SOA: primary name server first, ``hostmaster@origin`` as the
    contact, negative TTL (minimum) equal to the record TTL."""
    ttl = _ttl(config)
    soa = SOA(
        mname=_nameservers(hostname, config)[0],
        rname=f"hostmaster.{origin}",
        serial=serial,
        refresh=_REFRESH,
        retry=_RETRY,
        expire=_EXPIRE,
        minimum=ttl,
    )
    return Zone(origin, (Record(origin, ttl, soa), *records))


def build_zones(
    origins: Sequence[str],
    hostname: str,
    config: DNS,
    keys: Mapping[str, Sequence[PublishedKey]],
    serial_for: Mapping[str, int] | None = None,
    bounce_template: str | None = None,
    nodes: Sequence[ClusterNode] = (),
) -> list[Zone]:
    """Zones with the serials in ``serial_for`` (origin to serial; 1 when missing).

    Callers with a :class:`~rail.dns.serial.SerialFile` pass
    ``file.assign({o: digest(r) for o, r in domain_records(...).items()}, now)``;
    :func:`rail.dns.sources.load_zones` does this.
    """
    records = domain_records(origins, hostname, config, keys, bounce_template, nodes)
    serials = serial_for or {}
    return [
        make_zone(origin, records[origin], serials.get(origin, 1), hostname, config)
        for origin in origins
    ]
