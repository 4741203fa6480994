"""DNS for the synchronous authentication libraries, answered by twisted.names.

pyspf and dkimpy ask DNS questions as plain function calls. They run in a worker thread
(:mod:`rail.inbound.verifier`), and :class:`ThreadedLookup` answers those calls by
running the query on the reactor with the configured resolver and blocking *that worker
thread* until it is answered: the reactor never waits.

Answers are cached for their TTL (capped at :data:`MAX_TTL`), negative answers for the
SOA's negative TTL (RFC 2308 §5), in a bounded least-recently-used table shared by every
thread, so a repeated sender costs no round trip. Temporary failures are not cached.
Identical questions in flight at the same time share one query.

A check may first run *cache only* (:meth:`ThreadedLookup.cache_only`): a question the
cache cannot answer then raises :class:`CacheMiss` at once instead of waiting, so that
run can be given up and made again in a thread that may block (see
:mod:`rail.inbound.verifier`).

CNAMEs are followed through the answer section, and asked again when a server returned
only the alias, up to :data:`MAX_CNAME` links.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IResolver
from twisted.names import dns
from twisted.names.error import DNSNameError
from twisted.python.failure import Failure
from twisted.python.threadable import isInIOThread

from rail.inbound.answers import DNSTemporaryError, RecordType, Value

__all__ = ["MAX_CNAME", "MAX_TTL", "NEGATIVE_TTL", "CacheMiss", "ThreadedLookup"]

MAX_TTL = 86400
"""No answer is kept longer than a day, whatever its TTL says."""
NEGATIVE_TTL = 60
"""Seconds a negative answer is kept when the server sent no SOA to say for how long."""
MAX_CNAME = 8

_TYPES: dict[str, int] = {
    "A": dns.A,
    "AAAA": dns.AAAA,
    "MX": dns.MX,
    "PTR": dns.PTR,
    "TXT": dns.TXT,
}
_NOT_FOUND: tuple[Value, ...] = ()


class CacheMiss(BaseException):
    """A cache-only run met a question the cache cannot answer. A BaseException, so the
    libraries' and the checks' ``except Exception`` clauses let it through."""


class ThreadedLookup:
    """A :class:`rail.inbound.answers.DNSLookup` for worker threads.

    ``reactor`` runs the queries (IReactorFromThreads) and tells the time
    (IReactorTime); ``resolver`` is a twisted.names client whose own timeouts bound
    every query. ``wait`` is the longest a thread waits for the reactor in any case
    (a reactor that stopped would otherwise hold the thread forever).
    """

    def __init__(
        self,
        reactor: Any,
        resolver: IResolver,
        cache_size: int = 10_000,
        *,
        wait: float = 30.0,
    ) -> None:
        self._reactor = reactor
        self._resolver = resolver
        self._cache_size = cache_size
        self._wait = wait
        self._cache: OrderedDict[tuple[bytes, int], tuple[float, tuple[Value, ...]]] = OrderedDict()
        self._lock = threading.Lock()
        self._inflight: dict[tuple[bytes, int], list[Deferred[tuple[Value, ...]]]] = {}
        self._local = threading.local()
        self.queries = 0
        """Questions that went to the resolver (cache misses), for tests and benchmarks."""

    @contextmanager
    def cache_only(self) -> Iterator[None]:
        """In this thread, for the ``with`` block: a cache miss raises :class:`CacheMiss`
        (and :meth:`missed` tells afterwards, even when a library caught and hid it)."""
        self._local.cache_only = True
        self._local.missed = False
        try:
            yield
        finally:
            self._local.cache_only = False

    def missed(self) -> bool:
        """Whether this thread's last cache-only block met a miss."""
        return bool(getattr(self._local, "missed", False))

    def txt(self, name: str) -> tuple[bytes, ...]:
        """The TXT records at ``name``, strings joined."""
        return tuple(v for v in self.query(name, "TXT") if isinstance(v, bytes))

    def query(self, name: str, rtype: RecordType) -> tuple[Value, ...]:
        """The ``rtype`` data at ``name``, from the cache or the resolver."""
        if isInIOThread():  # type: ignore[no-untyped-call, unused-ignore]
            raise RuntimeError("ThreadedLookup would block the reactor thread")
        encoded = _encode(name)
        if encoded is None:
            return _NOT_FOUND
        key = (encoded, _TYPES[rtype])
        now = self._reactor.seconds()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                if cached[0] > now:
                    self._cache.move_to_end(key)
                    return cached[1]
                del self._cache[key]
        if getattr(self._local, "cache_only", False):
            self._local.missed = True
            raise CacheMiss(name, rtype)
        return self._ask(key)

    def _ask(self, key: tuple[bytes, int]) -> tuple[Value, ...]:
        """Run the query on the reactor and wait for it here, in the worker thread."""
        answer: queue.Queue[tuple[Value, ...] | Failure] = queue.Queue(1)

        def start() -> None:
            self._fetch(key).addBoth(answer.put)

        self._reactor.callFromThread(start)
        try:
            result = answer.get(timeout=self._wait)
        except queue.Empty:
            raise DNSTemporaryError(f"no answer within {self._wait:g}s") from None
        if isinstance(result, Failure):
            result.raiseException()
        assert not isinstance(result, Failure)
        return result

    def _fetch(self, key: tuple[bytes, int]) -> Deferred[tuple[Value, ...]]:
        """On the reactor: one query per distinct question in flight."""
        waiting: Deferred[tuple[Value, ...]] = Deferred()
        if key in self._inflight:
            self._inflight[key].append(waiting)
            return waiting
        self._inflight[key] = [waiting]
        self.queries += 1
        Deferred.fromCoroutine(self._resolve(*key)).addBoth(self._answered, key)
        return waiting

    def _answered(self, result: tuple[Value, ...] | Failure, key: tuple[bytes, int]) -> None:
        for waiting in self._inflight.pop(key, []):
            if isinstance(result, Failure):
                waiting.errback(result)
            else:
                waiting.callback(result)

    async def _resolve(self, name: bytes, qtype: int) -> tuple[Value, ...]:
        target, ttl = name, MAX_TTL
        for _ in range(MAX_CNAME + 1):
            try:
                # No timeout argument: the resolver's own (make_resolver's) applies.
                resolver: Any = self._resolver
                sections: Any = await resolver.query(dns.Query(target, qtype, dns.IN))
            except DNSNameError as error:
                message = error.args[0] if error.args else None
                negative = _negative_ttl(getattr(message, "authority", []))
                self._store((name, qtype), min(ttl, negative), _NOT_FOUND)
                return _NOT_FOUND
            except Exception as error:
                raise DNSTemporaryError(f"{type(error).__name__} for {target!r}") from error
            answers, authority, _additional = sections
            target, values, chain_ttl, complete = _follow(target, qtype, answers)
            ttl = min(ttl, chain_ttl)
            if complete:
                if not values:
                    ttl = min(ttl, _negative_ttl(authority))
                self._store((name, qtype), ttl, values)
                return values
        raise DNSTemporaryError(f"CNAME chain longer than {MAX_CNAME} at {name!r}")

    def _store(self, key: tuple[bytes, int], ttl: int, values: tuple[Value, ...]) -> None:
        if ttl <= 0 or self._cache_size <= 0:
            return
        expires = self._reactor.seconds() + min(ttl, MAX_TTL)
        with self._lock:
            self._cache[key] = (expires, values)
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)


def _encode(name: str) -> bytes | None:
    """``name`` as an A-label query name, lower-case and without a root dot; None when it
    cannot be one (a U-label IDNA refuses, an empty label)."""
    name = name.rstrip(".").lower()
    try:
        encoded = name.encode("ascii") if name.isascii() else name.encode("idna")
    except UnicodeError:
        return None
    if not encoded or b".." in encoded or len(encoded) > 253:
        return None
    return encoded


def _follow(
    name: bytes, qtype: int, answers: list[dns.RRHeader]
) -> tuple[bytes, tuple[Value, ...], int, bool]:
    """Walk the answer section from ``name``: (where the chain ended, the data found
    there, the smallest TTL used, whether the answer is complete). Incomplete means the
    chain ends in an alias whose target the server did not answer for."""
    owners: dict[bytes, list[dns.RRHeader]] = {}
    for record in answers:
        owners.setdefault(record.name.name.lower().rstrip(b"."), []).append(record)
    ttl = MAX_TTL
    followed = False
    for _ in range(MAX_CNAME + 1):
        here = owners.get(name, [])
        data = [r for r in here if r.type == qtype]
        if data:
            ttl = min([ttl, *(r.ttl for r in data)])
            return name, tuple(_value(r) for r in data), ttl, True
        alias = [r for r in here if r.type == dns.CNAME]
        if not alias:
            return name, _NOT_FOUND, ttl, not followed
        ttl = min(ttl, alias[0].ttl)
        target: Any = alias[0].payload
        name = target.name.name.lower().rstrip(b".")
        followed = True
    raise DNSTemporaryError("CNAME chain too long")


def _value(record: dns.RRHeader) -> Value:
    payload: Any = record.payload
    if record.type == dns.A:
        return str(payload.dottedQuad())
    if record.type == dns.AAAA:
        return socket.inet_ntop(socket.AF_INET6, payload.address)
    if record.type == dns.MX:
        return (int(payload.preference), _text(payload.name.name))
    if record.type == dns.PTR:
        return _text(payload.name.name)
    return b"".join(payload.data)


def _text(name: bytes) -> str:
    return name.decode("ascii", "replace").rstrip(".")


def _negative_ttl(authority: list[dns.RRHeader]) -> int:
    """RFC 2308 §5: the smaller of the SOA's TTL and its MINIMUM field."""
    for record in authority:
        if record.type == dns.SOA:
            soa: Any = record.payload
            return min(record.ttl, int(soa.minimum))
    return NEGATIVE_TTL
