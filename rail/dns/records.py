"""DNS resource records as plain values, independent of any wire library.

Rail's zones are built, compared, hashed (for the SOA serial), looked up and printed as a
zone file from these values; only :mod:`rail.dns.wire` turns them into twisted.names
objects. Names are absolute, lower-case A-labels written without the final dot.
"""

from __future__ import annotations

from typing import ClassVar

import attrs

__all__ = [
    "AAAA",
    "ANY",
    "AXFR",
    "CAA",
    "HINFO",
    "IXFR",
    "MX",
    "NS",
    "SOA",
    "TXT",
    "A",
    "RData",
    "Record",
    "in_zone",
]

ANY = 255
AXFR = 252
IXFR = 251


@attrs.frozen
class A:
    """An IPv4 address (``192.0.2.1``)."""

    TYPE: ClassVar[int] = 1
    address: str


@attrs.frozen
class AAAA:
    """An IPv6 address in canonical form (``2001:db8::1``)."""

    TYPE: ClassVar[int] = 28
    address: str


@attrs.frozen
class NS:
    """A name server of the zone."""

    TYPE: ClassVar[int] = 2
    target: str


@attrs.frozen
class MX:
    """A mail exchanger."""

    TYPE: ClassVar[int] = 15
    preference: int
    exchange: str


@attrs.frozen
class TXT:
    """Character-strings of at most 255 octets each, ASCII."""

    TYPE: ClassVar[int] = 16
    strings: tuple[str, ...]


@attrs.frozen
class SOA:
    """Start of authority; ``minimum`` is the negative-caching TTL (RFC 2308)."""

    TYPE: ClassVar[int] = 6
    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


@attrs.frozen
class CAA:
    """Certification authority authorization (RFC 8659), e.g. ``0 issue "letsencrypt.org"``."""

    TYPE: ClassVar[int] = 257
    flags: int
    tag: str
    value: str


@attrs.frozen
class HINFO:
    """Only used for the RFC 8482 answer to ANY queries."""

    TYPE: ClassVar[int] = 13
    cpu: str
    os: str


RData = A | AAAA | NS | MX | TXT | SOA | CAA | HINFO


@attrs.frozen
class Record:
    """One resource record of class IN."""

    name: str
    ttl: int
    data: RData

    @property
    def type(self) -> int:
        """The numeric RR type (1 for A, 16 for TXT...)."""
        return self.data.TYPE


def in_zone(name: str, origin: str) -> bool:
    """Whether ``name`` is ``origin`` or below it (both lower-case, no final dot)."""
    return name == origin or name.endswith("." + origin)
