"""The records Rail publishes for each local domain, built from plain inputs.

Each local domain is a zone: SOA, NS, MX 10 to ``hostname``, SPF, DMARC, MTA-STS and
TLS-RPT records, CAA, the DKIM keys in use, the MX and SPF of its bounce domain
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
from rail.config.schema import DNS
from rail.dkim.records import PublishedKey, record_name, txt_strings
from rail.dns.mtasts import policy_id, policy_text
from rail.dns.records import AAAA, CAA, MX, NS, SOA, TXT, A, RData, Record, in_zone

__all__ = ["Zone", "build_zones", "digest", "domain_records", "make_zone"]

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


def _spf(config: DNS) -> str:
    parts = ["v=spf1", "mx"]
    parts += [f"ip4:{address}" for address in config.ipv4]
    parts += [f"ip6:{address}" for address in config.ipv6]
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


def _addresses(config: DNS) -> list[RData]:
    return [*(A(a) for a in config.ipv4), *(AAAA(a) for a in config.ipv6)]


def _nameservers(hostname: str, config: DNS) -> tuple[str, ...]:
    return config.nameservers or (hostname,)


def domain_records(
    origins: Sequence[str],
    hostname: str,
    config: DNS,
    keys: Mapping[str, Sequence[PublishedKey]],
    bounce_template: str | None = None,
) -> dict[str, list[Record]]:
    """Every zone's records except the SOA, by origin, in a stable order.

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

    def add(name: str, data: RData) -> None:
        origin = _owner(name, origins)
        if origin is not None:
            result[origin].append(Record(name, ttl, data))

    policy = policy_text(config.mta_sts_mode, hostname, config.mta_sts_max_age)
    for origin in origins:
        for target in _nameservers(hostname, config):
            result[origin].append(Record(origin, ttl, NS(target)))
        result[origin].append(Record(origin, ttl, MX(10, hostname)))
        result[origin].append(Record(origin, ttl, _txt(_spf(config))))
        result[origin].extend(Record(origin, ttl, CAA(0, "issue", ca)) for ca in config.caa)
        add(f"_dmarc.{origin}", _txt(_dmarc(config)))
        add(f"_mta-sts.{origin}", _txt(f"v=STSv1; id={policy_id(policy)}"))
        for data in _addresses(config):
            add(f"mta-sts.{origin}", data)
        if config.tls_rpt is not None:
            add(f"_smtp._tls.{origin}", _txt(f"v=TLSRPTv1; rua={config.tls_rpt}"))
        if bounce_template is not None:
            bounces = bounce_domain(bounce_template, origin)
            add(bounces, MX(10, hostname))
            add(bounces, _txt(_spf(config)))
    hosts = dict.fromkeys([hostname, *_nameservers(hostname, config)])
    for host in hosts:
        for data in _addresses(config):
            add(host, data)
    if _owner(hostname, origins) not in (None, hostname):
        # The HELO identity of Rail's own mail (and DSNs) is checked by SPF too.
        add(hostname, _txt("v=spf1 a -all"))
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
) -> list[Zone]:
    """Zones with the serials in ``serial_for`` (origin to serial; 1 when missing).

    Callers with a :class:`~rail.dns.serial.SerialFile` pass
    ``file.assign({o: digest(r) for o, r in domain_records(...).items()}, now)``;
    :func:`rail.dns.sources.load_zones` does this.
    """
    records = domain_records(origins, hostname, config, keys, bounce_template)
    serials = serial_for or {}
    return [
        make_zone(origin, records[origin], serials.get(origin, 1), hostname, config)
        for origin in origins
    ]
