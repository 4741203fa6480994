"""DNS messages on the wire, through twisted.names' codec, with what it leaves out.

twisted.names encodes and decodes messages but its server never truncates, ignores EDNS
(no OPT is echoed) and cannot encode a TXT string over 255 octets. This module parses a
query strictly (anything short or inconsistent is ``None``: dropped), reads the OPT
record (RFC 6891), and encodes a response within the client's size limit: additional
records go first, and if the answer still does not fit, the answer and authority
sections are emptied and TC set, never sending part of an RRset.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import attrs
from twisted.names import dns

from rail.dns.records import AAAA, HINFO, MX, NS, SOA, TXT, A, Record

__all__ = [
    "EDNS",
    "MAX_UDP_PAYLOAD",
    "NO_EDNS_LIMIT",
    "ParsedQuery",
    "encode_response",
    "parse_query",
    "to_rr",
    "unchecked_tsig",
]

NO_EDNS_LIMIT = 512
MAX_UDP_PAYLOAD = 1232
"""What Rail advertises and the most it sends over UDP, whatever the client offers: the
DNS Flag Day 2020 size, which avoids IP fragmentation on common paths."""

_HEADER = struct.Struct("!HHHHHH")
_QR = 0x8000
_KNOWN_OPCODES = frozenset(
    {dns.OP_QUERY, dns.OP_INVERSE, dns.OP_STATUS, dns.OP_NOTIFY, dns.OP_UPDATE}
)
_DO = 0x8000
_RD = 0x0100
_CD = 0x0010
_records: Any = dns  # the Record_* constructors are untyped (mypy --strict)


@attrs.frozen
class EDNS:
    """The client's OPT record: its UDP payload size, EDNS version and DO bit."""

    payload: int
    version: int
    dnssec_ok: bool


@attrs.frozen(eq=False)
class ParsedQuery:
    """A well-formed request: the header fields a response echoes, and the question."""

    id: int
    opcode: int
    recursion_desired: bool
    checking_disabled: bool
    questions: tuple[dns.Query, ...]
    edns: EDNS | None
    bad_opt: bool
    """More than one OPT record, or one not at the root: FORMERR (RFC 6891 §6.1.1)."""
    tsig: dns.RRHeader | None = None
    """The request's TSIG record (RFC 8945), last in the additional section; Rail holds
    no TSIG key, so it can check none."""
    bad_tsig: bool = False
    """A TSIG record elsewhere than last, or more than one: FORMERR (RFC 8945)."""

    def udp_limit(self) -> int:
        """The largest UDP response this client accepts, capped at ``MAX_UDP_PAYLOAD``."""
        if self.edns is None:
            return NO_EDNS_LIMIT
        return max(NO_EDNS_LIMIT, min(self.edns.payload, MAX_UDP_PAYLOAD))


def parse_query(data: bytes) -> ParsedQuery | None:
    """The query in ``data``; ``None`` for anything to drop without answering: a
    response (QR=1, so two servers can never bounce packets between them), or bytes that
    do not decode to exactly what the header announces.

    A message with an opcode no DNS server here knows (DSO, 6, whose body is not
    sections but TLVs, and the unassigned ones) is read as its header alone, so it can be
    answered NOTIMP (RFC 8906, RFC 8490) with no section echoed."""
    if len(data) < _HEADER.size:
        return None
    message_id, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if flags & _QR:
        return None
    opcode = (flags >> 11) & 0xF
    if opcode not in _KNOWN_OPCODES:
        return ParsedQuery(
            id=message_id,
            opcode=opcode,
            recursion_desired=bool(flags & _RD),
            checking_disabled=bool(flags & _CD),
            questions=(),
            edns=None,
            bad_opt=False,
        )
    message = dns.Message()
    try:
        message.fromStr(data)
    except Exception:
        return None
    counts = (len(message.queries), len(message.answers), len(message.authority))
    if counts != (qdcount, ancount, nscount) or len(message.additional) != arcount:
        return None
    options = [r for r in message.additional if r.type == dns.OPT]
    edns = None
    bad_opt = len(options) > 1 or any(r.name.name != b"" for r in options)
    if options:
        opt = options[0]
        edns = EDNS(payload=opt.cls, version=(opt.ttl >> 16) & 0xFF, dnssec_ok=bool(opt.ttl & _DO))
    signatures = [i for i, r in enumerate(message.additional) if r.type == dns.TSIG]
    tsig = message.additional[-1] if signatures else None
    bad_tsig = bool(signatures) and signatures != [len(message.additional) - 1]
    return ParsedQuery(
        id=message.id,
        opcode=opcode,
        recursion_desired=bool(message.recDes),
        checking_disabled=bool(message.checkingDisabled),
        questions=tuple(message.queries),
        edns=edns,
        bad_opt=bad_opt,
        tsig=tsig,
        bad_tsig=bad_tsig,
    )


def unchecked_tsig(query: ParsedQuery) -> dns.RRHeader:
    """The TSIG record of an error response to a request signed with a key Rail does not
    hold (RFC 8945 §5.2): unsigned (no MAC), error BADKEY, the request's key name,
    algorithm, time, fudge and original id."""
    request = query.tsig
    assert request is not None
    signed: Any = request.payload
    return dns.RRHeader(
        name=request.name.name,
        type=dns.TSIG,
        cls=dns.ANY,
        ttl=0,
        payload=dns.Record_TSIG(
            algorithm=signed.algorithm.name,
            timeSigned=signed.timeSigned,
            fudge=signed.fudge,
            MAC=b"",
            originalID=signed.originalID,
            error=dns.EBADKEY,
            otherData=b"",
        ),
    )


def _rdata(record: Record) -> Any:
    data = record.data
    ttl = record.ttl
    if isinstance(data, A):
        return _records.Record_A(data.address, ttl=ttl)
    if isinstance(data, AAAA):
        return _records.Record_AAAA(data.address, ttl=ttl)
    if isinstance(data, NS):
        return _records.Record_NS(data.target, ttl=ttl)
    if isinstance(data, MX):
        return _records.Record_MX(data.preference, data.exchange, ttl=ttl)
    if isinstance(data, TXT):
        return _records.Record_TXT(*(s.encode("ascii") for s in data.strings), ttl=ttl)
    if isinstance(data, SOA):
        return _records.Record_SOA(
            mname=data.mname,
            rname=data.rname,
            serial=data.serial,
            refresh=data.refresh,
            retry=data.retry,
            expire=data.expire,
            minimum=data.minimum,
            ttl=ttl,
        )
    if isinstance(data, HINFO):
        return _records.Record_HINFO(data.cpu.encode("ascii"), data.os.encode("ascii"), ttl=ttl)
    tag = data.tag.encode("ascii")
    wire = bytes([data.flags, len(tag)]) + tag + data.value.encode("ascii")
    return _records.UnknownRecord(wire, ttl=ttl)


def to_rr(record: Record, owner: bytes | None = None) -> dns.RRHeader:
    """``record`` as twisted.names' RRHeader; ``owner`` overrides the name's spelling
    (answers echo the question's letter case)."""
    return dns.RRHeader(
        name=owner if owner is not None else record.name.encode("ascii"),
        type=record.type,
        cls=dns.IN,
        ttl=record.ttl,
        payload=_rdata(record),
        auth=True,
    )


def _opt(query: ParsedQuery, extended_rcode: int) -> dns.RRHeader:
    assert query.edns is not None
    flags = _DO if query.edns.dnssec_ok else 0
    return dns.RRHeader(
        name=b"",
        type=dns.OPT,
        cls=MAX_UDP_PAYLOAD,
        ttl=(extended_rcode << 24) | flags,
        payload=_records.UnknownRecord(b""),
    )


def encode_response(
    query: ParsedQuery,
    rcode: int,
    *,
    limit: int,
    authoritative: bool = False,
    answers: Sequence[dns.RRHeader] = (),
    authority: Sequence[dns.RRHeader] = (),
    additional: Sequence[dns.RRHeader] = (),
    truncated: bool = False,
    tsig: dns.RRHeader | None = None,
) -> bytes:
    """The response to ``query`` in at most ``limit`` octets (when the question fits).

    ``rcode`` may be an extended code (BADVERS, 16): its upper bits go in the OPT record.
    ``truncated`` sends the question alone with TC set (rate limiting's slip). ``tsig``
    goes last, after the OPT record, as RFC 8945 requires.
    """
    message = dns.Message(
        id=query.id,
        answer=1,
        opCode=query.opcode,
        auth=authoritative,
        recDes=int(query.recursion_desired),
        recAv=0,
        rCode=rcode & 0xF,
        checkingDisabled=int(query.checking_disabled),
        maxSize=0,  # Message cuts bytes at maxSize (512 by default); sections are cut here
    )
    message.queries = list(query.questions)
    opt = [_opt(query, rcode >> 4)] if query.edns is not None else []
    if tsig is not None:
        opt.append(tsig)
    if truncated:
        message.trunc = 1
        message.additional = opt
        return message.toStr()
    message.answers = list(answers)
    message.authority = list(authority)
    message.additional = [*additional, *opt]
    data = message.toStr()
    if len(data) <= limit:
        return data
    if additional:
        # Additional records are optional: dropping them needs no TC (RFC 2181 §9).
        message.additional = opt
        data = message.toStr()
        if len(data) <= limit:
            return data
    message.answers, message.authority, message.trunc = [], [], 1
    return message.toStr()
