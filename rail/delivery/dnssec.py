"""DNSSEC-aware look-ups for DANE: the MX RRset's security and the TLSA records of MX hosts.

Rail does not validate DNSSEC itself. It asks a validating resolver the operator runs on
the same host or a trusted network (``delivery.dane_resolver``, e.g. unbound on
127.0.0.1) with the DO bit set, and believes the resolver's AD ("authentic data") bit.
That bit is only as trustworthy as the path to the resolver: anyone on the way could set
it, so it is honoured only from the resolver named in the configuration, which should be
on loopback (RFC 6698 §A.3, RFC 7672 §2.1.1 and RFC 4035 §4.9.3 give the same advice).
A validating resolver answers SERVFAIL for bogus data, so a failed look-up is not
"insecure": it defers delivery, never weakens it.

The queries use dnspython's blocking client and so run in a thread (see
:class:`DaneResolver`); :func:`interpret` and :func:`mx_hosts`/:func:`tlsa_records`
decide from a dnspython message, and are tested with messages built from text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import attrs
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from twisted.internet.defer import Deferred

from rail.delivery.dane import TLSARecord

__all__ = [
    "DNSSEC_TIMEOUT",
    "DaneResolver",
    "SecureAnswer",
    "interpret",
    "mx_hosts",
    "query",
    "tlsa_name",
    "tlsa_records",
]

DNSSEC_TIMEOUT = 5.0
"""Seconds one query to the validating resolver may take before the look-up has failed."""

Status = Literal["secure", "insecure", "failed"]


@attrs.frozen
class SecureAnswer:
    """What the validating resolver said about one name and type.

    ``secure``: validated (AD set), ``rdata`` the records (empty for NXDOMAIN or no
    data); ``insecure``: an answer without AD (an unsigned zone); ``failed``: SERVFAIL
    (bogus, or the resolver could not get an answer), another error or no answer, with
    ``reason`` saying which.
    """

    status: Status
    rdata: tuple[Any, ...] = ()
    reason: str = ""
    name: str = ""
    """The owner of the records once the CNAMEs in the answer are followed from the
    question (lower-case, no final dot): the expanded name of RFC 7672 §2.2.2, equal to
    the question when there is no CNAME; empty when not known."""


def tlsa_name(host: str, port: int = 25) -> str:
    """The TLSA owner name of an SMTP server (RFC 7672 §2.2.3): ``_25._tcp.<host>``."""
    return f"_{port}._tcp.{host.rstrip('.')}"


def interpret(response: dns.message.Message, rdtype: int) -> SecureAnswer:
    """The :class:`SecureAnswer` a resolver's response means for records of ``rdtype``
    (CNAMEs the resolver followed are looked through, and ``name`` says where they
    led)."""
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        why = "bogus or unavailable" if rcode == dns.rcode.SERVFAIL else "refused"
        return SecureAnswer("failed", reason=f"{dns.rcode.to_text(rcode)} ({why})")
    name = _expanded(response)
    if not response.flags & dns.flags.AD:
        return SecureAnswer("insecure", name=name)
    rdata = tuple(rd for rrset in response.answer if rrset.rdtype == rdtype for rd in rrset)
    return SecureAnswer("secure", rdata, name=name)


def _expanded(response: dns.message.Message) -> str:
    """The question's name with the answer's CNAME chain followed (bounded: a loop in a
    forged answer ends it)."""
    if not response.question:
        return ""
    name = response.question[0].name
    cnames = {
        rrset.name: rrset[0].target
        for rrset in response.answer
        if rrset.rdtype == dns.rdatatype.CNAME and len(rrset)
    }
    for _ in range(len(cnames)):
        target = cnames.get(name)
        if target is None:
            break
        name = target
    return str(name.to_text(omit_final_dot=True)).lower()


def mx_hosts(answer: SecureAnswer) -> tuple[str, ...]:
    """The exchanges of an MX answer, lower-cased without the final dot (null MX
    dropped), in no particular order."""
    names = {rd.exchange.to_text(omit_final_dot=True).lower() for rd in answer.rdata}
    return tuple(sorted(name for name in names if name not in ("", ".")))


def tlsa_records(answer: SecureAnswer) -> tuple[TLSARecord, ...]:
    """The TLSA records of an answer as :class:`TLSARecord` values."""
    return tuple(TLSARecord(rd.usage, rd.selector, rd.mtype, bytes(rd.cert)) for rd in answer.rdata)


def query(
    server: tuple[str, int], name: str, rdtype: int, timeout: float = DNSSEC_TIMEOUT
) -> SecureAnswer:
    """Ask ``server`` (address, port) for ``name``/``rdtype`` with DO and AD set
    (blocking: run it in a thread)."""
    message = dns.message.make_query(name, dns.rdatatype.RdataType(rdtype), want_dnssec=True)
    message.flags |= dns.flags.AD
    try:
        response, _ = dns.query.udp_with_fallback(
            message, server[0], timeout=timeout, port=server[1]
        )
    except dns.exception.Timeout:
        return SecureAnswer("failed", reason="no answer from the validating resolver")
    except (OSError, dns.exception.DNSException) as error:
        return SecureAnswer("failed", reason=f"validating resolver: {error}")
    return interpret(response, rdtype)


@attrs.frozen
class DaneResolver:
    """Look-ups of MX and TLSA records at the validating resolver ``server``, each in a
    thread through ``in_thread`` (the reactor's pool: a query blocks for at most
    ``timeout`` seconds, and the local resolver's cache makes most of them instant)."""

    server: tuple[str, int]
    in_thread: Callable[[Callable[[], SecureAnswer]], Deferred[SecureAnswer]]
    timeout: float = DNSSEC_TIMEOUT

    def mx(self, domain: str) -> Deferred[SecureAnswer]:
        return self.in_thread(lambda: query(self.server, domain, dns.rdatatype.MX, self.timeout))

    def address(self, host: str) -> Deferred[SecureAnswer]:
        """The security of ``host``'s address records (RFC 7672 §2.2.2): its A RRset, or
        its AAAA RRset when it securely has no A; ``name`` is the CNAME-expanded name."""

        def ask() -> SecureAnswer:
            answer = query(self.server, host, dns.rdatatype.A, self.timeout)
            if answer.status == "secure" and not answer.rdata:
                return query(self.server, host, dns.rdatatype.AAAA, self.timeout)
            return answer

        return self.in_thread(ask)

    def tlsa(self, host: str, port: int = 25) -> Deferred[SecureAnswer]:
        name = tlsa_name(host, port)
        return self.in_thread(lambda: query(self.server, name, dns.rdatatype.TLSA, self.timeout))
