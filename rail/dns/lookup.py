"""What Rail's authoritative server answers to one question, decided on plain values.

No wire format here (:mod:`rail.dns.wire` encodes): given the zones and ``(name, type,
class)``, decide the response code, the AA flag and the three record sections.

- A name outside every zone, a class other than IN (or ANY), and zone transfers (AXFR,
  IXFR) are REFUSED: Rail is not a resolver and does not feed secondaries.
- Inside a zone every answer is authoritative. A name without records that has records
  below it (``_domainkey.example.com``) exists (RFC 8020): NODATA, not NXDOMAIN.
- NXDOMAIN and NODATA carry the zone's SOA in the authority section, with TTL
  ``min(SOA TTL, SOA minimum)`` (RFC 2308 §3).
- ANY gets one synthesized ``HINFO "RFC8482" ""`` record (RFC 8482 §4.2).
- MX and NS answers carry the addresses of in-zone targets as additional records.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from rail.dns.records import ANY, AXFR, HINFO, IXFR, MX, NS, SOA, Record
from rail.dns.zone import Zone

__all__ = [
    "FORMERR",
    "NOERROR",
    "NOTIMP",
    "NXDOMAIN",
    "REFUSED",
    "Answer",
    "ZoneIndex",
]

NOERROR = 0
FORMERR = 1
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5

_IN = 1
_CLASS_ANY = 255
_MAILB, _MAILA = 253, 254
_ADDRESS_TYPES = (1, 28)


@attrs.frozen
class Answer:
    """A decided response, before encoding."""

    rcode: int
    authoritative: bool = False
    answers: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()


_REFUSED = Answer(REFUSED)
_NOTIMP = Answer(NOTIMP)


class _Indexed:
    """One zone, its records grouped by owner and type."""

    def __init__(self, zone: Zone) -> None:
        self.origin = zone.origin
        soa = zone.soa
        assert isinstance(soa.data, SOA)
        self.negative = (attrs.evolve(soa, ttl=min(soa.ttl, soa.data.minimum)),)
        self.hinfo_ttl = soa.ttl
        self.rrsets: dict[str, dict[int, tuple[Record, ...]]] = {}
        for record in zone.records:
            by_type = self.rrsets.setdefault(record.name, {})
            by_type[record.type] = (*by_type.get(record.type, ()), record)
        # Every owner and the empty non-terminals between it and the origin.
        self.names: set[str] = set()
        for name in self.rrsets:
            while name not in self.names:
                self.names.add(name)
                if name == self.origin:
                    break
                name = name.partition(".")[2]


class ZoneIndex:
    """The zones being served, indexed for look-ups; immutable once built."""

    def __init__(self, zones: Iterable[Zone]) -> None:
        self._zones = {zone.origin: _Indexed(zone) for zone in zones}

    @property
    def origins(self) -> list[str]:
        return sorted(self._zones)

    def _zone(self, name: str) -> _Indexed | None:
        while True:
            zone = self._zones.get(name)
            if zone is not None:
                return zone
            if not name:
                return None
            name = name.partition(".")[2]

    def _rrset(self, name: str, rtype: int) -> tuple[Record, ...]:
        zone = self._zone(name)
        if zone is None:
            return ()
        return zone.rrsets.get(name, {}).get(rtype, ())

    def answer(self, name: str, rtype: int, rclass: int = _IN) -> Answer:
        """The response to a query for ``name`` (lower-case, no final dot)."""
        if rtype in (AXFR, IXFR):
            return _REFUSED
        if rclass not in (_IN, _CLASS_ANY):
            return _REFUSED
        zone = self._zone(name)
        if zone is None:
            return _REFUSED
        if rtype in (_MAILA, _MAILB):
            return _NOTIMP
        if name not in zone.names:
            return Answer(NXDOMAIN, True, authority=zone.negative)
        rrsets = zone.rrsets.get(name, {})
        if rtype == ANY:
            if not rrsets:
                return Answer(NOERROR, True, authority=zone.negative)
            hinfo = Record(name, zone.hinfo_ttl, HINFO("RFC8482", ""))
            return Answer(NOERROR, True, answers=(hinfo,))
        found = rrsets.get(rtype)
        if not found:
            return Answer(NOERROR, True, authority=zone.negative)
        return Answer(NOERROR, True, answers=found, additional=self._additional(found))

    def _additional(self, records: tuple[Record, ...]) -> tuple[Record, ...]:
        targets = []
        for record in records:
            if isinstance(record.data, MX):
                targets.append(record.data.exchange)
            elif isinstance(record.data, NS):
                targets.append(record.data.target)
        extra: list[Record] = []
        for target in dict.fromkeys(targets):
            for rtype in _ADDRESS_TYPES:
                extra.extend(self._rrset(target, rtype))
        return tuple(extra)
