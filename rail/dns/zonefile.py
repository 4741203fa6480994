"""A zone as RFC 1035 master-file text, for operators who publish Rail's records in other
DNS (``rail dns records``). Names are written absolute, so lines can be pasted anywhere;
the output passes ``named-checkzone``.
"""

from __future__ import annotations

from rail.dns.records import AAAA, CAA, HINFO, MX, NS, SOA, TXT, A, Record
from rail.dns.zone import Zone

__all__ = ["record_line", "zone_text"]


def _name(name: str) -> str:
    return f"{name}."


def _quoted(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _rdata(record: Record) -> tuple[str, str]:
    data = record.data
    if isinstance(data, A):
        return "A", data.address
    if isinstance(data, AAAA):
        return "AAAA", data.address
    if isinstance(data, NS):
        return "NS", _name(data.target)
    if isinstance(data, MX):
        return "MX", f"{data.preference} {_name(data.exchange)}"
    if isinstance(data, TXT):
        return "TXT", " ".join(_quoted(s) for s in data.strings)
    if isinstance(data, SOA):
        fields = (data.serial, data.refresh, data.retry, data.expire, data.minimum)
        numbers = " ".join(str(f) for f in fields)
        return "SOA", f"{_name(data.mname)} {_name(data.rname)} {numbers}"
    if isinstance(data, CAA):
        return "CAA", f"{data.flags} {data.tag} {_quoted(data.value)}"
    assert isinstance(data, HINFO)
    return "HINFO", f"{_quoted(data.cpu)} {_quoted(data.os)}"


def record_line(record: Record) -> str:
    """One record as a master-file line with an absolute owner name and explicit TTL."""
    rtype, rdata = _rdata(record)
    return f"{_name(record.name)}\t{record.ttl}\tIN\t{rtype}\t{rdata}"


def zone_text(zone: Zone) -> str:
    """The whole zone, SOA first, ending with a newline."""
    lines = [
        f"; Rail's records for {zone.origin} (serial {zone.serial})",
        f"$ORIGIN {_name(zone.origin)}",
        f"$TTL {zone.soa.ttl}",
        *(record_line(record) for record in zone.records),
    ]
    return "\n".join(lines) + "\n"
