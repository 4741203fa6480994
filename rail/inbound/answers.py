"""What the authentication checks ask of DNS, as plain values: the seam between the
synchronous SPF, DKIM and DMARC code and the twisted.names adapter that answers it.

A lookup gives the data of one record type at a name, CNAMEs already followed, or an
empty tuple when there is none (NXDOMAIN and NODATA alike: SPF, DKIM and DMARC treat
them the same). Anything that leaves the answer unknown (timeout, SERVFAIL, REFUSED,
a truncated chain) raises :class:`DNSTemporaryError`, which each check reports as its
``temperror``.
"""

from __future__ import annotations

from typing import Literal, Protocol

__all__ = ["DNSLookup", "DNSTemporaryError", "RecordType", "Value"]

RecordType = Literal["A", "AAAA", "MX", "PTR", "TXT"]

Value = str | bytes | tuple[int, str]
"""A: dotted quad; AAAA: RFC 5952 text; MX: (preference, exchange); PTR: a host name
without the root dot; TXT: the record's character-strings joined (RFC 7208 §3.3,
RFC 6376 §3.6.2.2)."""


class DNSTemporaryError(Exception):
    """The answer is unknown for now: ask again later (``temperror``)."""


class DNSLookup(Protocol):
    """Answers DNS questions synchronously; called from worker threads only."""

    def query(self, name: str, rtype: RecordType) -> tuple[Value, ...]:
        """The data of the ``rtype`` records at ``name``; raises DNSTemporaryError."""
        ...

    def txt(self, name: str) -> tuple[bytes, ...]:
        """The TXT records at ``name``, each one's strings joined."""
        ...
