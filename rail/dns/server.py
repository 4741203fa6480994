"""Rail's authoritative DNS server: from a request's bytes to the response's bytes.

The transports (:mod:`rail.dns.protocol`) call :meth:`DNSServer.respond` with each
message; this class applies the rules of RFC 1035/2308/6891/8482 that twisted.names'
stock ``DNSServerFactory`` lacks (see ``docs/dns.md``) and, for UDP, response rate
limiting. Zones are replaced as a whole with :meth:`DNSServer.update` (SIGHUP, DKIM
rotation, a new client certificate's domain): queries in flight see either the old or the
new set, never a mix.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable

from twisted.internet.interfaces import IReactorTime
from twisted.names import dns

from rail.dns.lookup import FORMERR, NOTIMP, Answer, ZoneIndex
from rail.dns.ratelimit import RateLimiter, response_key
from rail.dns.records import Record
from rail.dns.wire import ParsedQuery, encode_response, parse_query, to_rr, unchecked_tsig
from rail.dns.zone import Zone
from rail.refusals import Refusals

__all__ = ["DNSServer"]

_BADVERS = 16
_TCP_LIMIT = 65535
_NOTIMP = Answer(NOTIMP)
_FORMERR = Answer(FORMERR)
_BADVERS_ANSWER = Answer(_BADVERS)
_NOTAUTH = Answer(9)  # RFC 8945 §5.2: a TSIG key the server does not know


class DNSServer:
    """Answers queries from the zones it holds; one instance serves UDP and TCP."""

    def __init__(
        self,
        zones: Iterable[Zone],
        clock: IReactorTime,
        rate_limiter: RateLimiter | None = None,
        refusals: Refusals | None = None,
    ) -> None:
        self._index = ZoneIndex(zones)
        self._clock = clock
        self._limiter = rate_limiter
        self._refusals = refusals
        self.counts: Counter[str] = Counter()
        """Requests by outcome: ``answered``, ``dropped`` (malformed, QR=1, unknown
        opcode, own address), ``rate-limited``, ``slipped``. For tests and metrics."""

    @property
    def origins(self) -> list[str]:
        """The zones being served."""
        return self._index.origins

    def update(self, zones: Iterable[Zone]) -> None:
        """Serve ``zones`` from now on, instead of the previous ones."""
        self._index = ZoneIndex(zones)

    def install(self, index: ZoneIndex) -> None:
        """Serve the zones of ``index`` (built off the reactor thread) from now on."""
        self._index = index

    def set_rate_limiter(self, rate_limiter: RateLimiter | None) -> None:
        """Limit UDP answers with ``rate_limiter`` from now on (None: no limit)."""
        self._limiter = rate_limiter

    def respond(self, data: bytes, source: str | None) -> bytes | None:
        """The response to the message ``data``, or ``None`` to send nothing.

        ``source`` is the client's IP address for UDP, which is size-limited and rate
        limited per client network and response (:mod:`rail.dns.ratelimit`); ``None`` for
        TCP, which is neither.
        """
        query = parse_query(data)
        if query is None:
            self.counts["dropped"] += 1
            return None
        limit = _TCP_LIMIT if source is None else query.udp_limit()
        decided, name, asked = self._decide(query)
        if source is not None and self._limiter is not None:
            key = _response_key(query, decided, name)
            decision = self._limiter.check(source, key, self._clock.seconds())
            if decision == "drop":
                self.counts["rate-limited"] += 1
                if self._refusals is not None:
                    self._refusals.refuse("dns", "rate_limited", source)
                return None
            if decision == "slip":
                self.counts["slipped"] += 1
                if self._refusals is not None:
                    self._refusals.refuse("dns", "rate_slipped", source)
                return encode_response(query, 0, limit=limit, truncated=True)
        self.counts["answered"] += 1
        if decided is _NOTAUTH:
            return encode_response(query, decided.rcode, limit=limit, tsig=unchecked_tsig(query))
        return encode_response(
            query,
            decided.rcode,
            limit=limit,
            authoritative=decided.authoritative,
            answers=[_rr(r, name, asked) for r in decided.answers],
            authority=[to_rr(r) for r in decided.authority],
            additional=[to_rr(r) for r in decided.additional],
        )

    def _decide(self, query: ParsedQuery) -> tuple[Answer, str, bytes]:
        """The answer to ``query``, with the asked name lower-cased (empty when the query
        is refused before its question is read) and as spelled by the client.

        A signed request is answered before anything else is looked at (RFC 8945 §5.2):
        Rail holds no TSIG key, so every signature is one it cannot check."""
        if query.bad_tsig:
            return _FORMERR, "", b""
        if query.tsig is not None:
            return _NOTAUTH, "", b""
        if query.opcode != dns.OP_QUERY:
            return _NOTIMP, "", b""
        if query.bad_opt or len(query.questions) != 1:
            return _FORMERR, "", b""
        if query.edns is not None and query.edns.version > 0:
            return _BADVERS_ANSWER, "", b""
        question = query.questions[0]
        asked = question.name.name
        name = asked.lower().decode("latin-1")
        return self._index.answer(name, question.type, question.cls), name, asked

    def lookup(self, name: str, rtype: int) -> Answer:
        """The decided answer for ``name`` and ``rtype`` (class IN), without encoding."""
        return self._index.answer(name.lower().rstrip("."), rtype)


def _response_key(query: ParsedQuery, answer: Answer, name: str) -> tuple[Hashable, ...]:
    """What the rate limiter counts this response as (with the client's network)."""
    if not name:
        return response_key(answer.rcode, False, "", 0, 0, None)
    question = query.questions[0]
    zone = answer.authority[0].name if answer.authority else None
    return response_key(answer.rcode, bool(answer.answers), name, question.type, question.cls, zone)


def _rr(record: Record, name: str, asked: bytes) -> dns.RRHeader:
    return to_rr(record, asked if record.name == name else None)
