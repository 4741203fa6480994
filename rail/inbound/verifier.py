"""SPF, DKIM, DMARC and ARC for a message received on port 25, without blocking the reactor.

pyspf and dkimpy are synchronous, so the whole check runs in a worker thread and asks
DNS through :class:`rail.inbound.lookup.ThreadedLookup` (twisted.names on the reactor,
a TTL cache shared by all checks). The result is an
:class:`rail.inbound.model.Authentication`.

Each check first runs *cache only* in a few threads of its own (``cached``, see
:mod:`rail.inbound.workers`). With the sender's records cached, the common case under
load, that is the whole check. A question the cache cannot answer ends that run at once,
and the check is made again in the larger pool (``threadpool``), whose threads may wait
for DNS. Ten busy pool threads competing for the GIL made the reactor thread wait after
each of its system calls; a first message from a new domain now costs one short
cache-only attempt more.

A bug must never read as a pass: an exception inside a check makes that check
``temperror`` (and DMARC is then evaluated on what is left), and is logged on the
reactor thread once the check is done.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IResolver
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.inbound.arcverify import ARCResult, verify_arc
from rail.inbound.dkimverify import MAX_SIGNATURES, verify_dkim
from rail.inbound.dmarc import DMARCOutcome, author_domain, discover, evaluate
from rail.inbound.lookup import CacheMiss, ThreadedLookup
from rail.inbound.model import Authentication, DKIMResult
from rail.inbound.spfcheck import SPFOutcome, check_spf
from rail.inbound.workers import Workers

__all__ = ["Verifier"]

_log = Logger()
_Broken = list[tuple[str, Failure]]


class Verifier:
    """Authenticates inbound messages; one per resolver configuration.

    ``threadpool`` runs the checks that wait for DNS (the reactor's own when None);
    ``cached``, when given, first tries each check from the cache in its threads;
    ``cache_size`` bounds the DNS cache (entries). ``rng`` samples DMARC ``pct``;
    ``max_signatures`` bounds the DKIM signatures verified per message.
    """

    def __init__(
        self,
        reactor: Any,
        resolver: IResolver,
        threadpool: Any = None,
        cache_size: int = 10_000,
        *,
        cached: Workers | None = None,
        rng: random.Random | None = None,
        max_signatures: int = MAX_SIGNATURES,
    ) -> None:
        self._reactor = reactor
        self._threadpool = threadpool
        self._cached = cached
        self._rng = rng or random.SystemRandom()
        self._max_signatures = max_signatures
        self.lookup = ThreadedLookup(reactor, resolver, cache_size)
        """The DNS adapter (its ``queries`` count is useful to tests and benchmarks)."""

    def verify(self, peer_ip: str, helo: str, sender: str, data: bytes) -> Deferred[Authentication]:
        """Check a message from ``peer_ip`` that said ``helo``, with MAIL FROM ``sender``
        ("" for the null reverse path) and content ``data`` (CRLF lines). Never fails."""
        args = (peer_ip, helo, sender, data)
        running: Deferred[Any]
        if self._cached is None:
            running = self._waiting(*args)
        else:
            first: Deferred[tuple[Authentication, _Broken] | None]
            first = self._cached.run(self._from_cache, *args, default=None)
            running = first.addCallback(
                lambda done: done if done is not None else self._waiting(*args)
            )
        return running.addCallbacks(
            self._reported,
            self._broken,
            callbackKeywords={"peer": peer_ip},
            errbackArgs=(peer_ip, helo, sender),
        )

    def _waiting(
        self, peer_ip: str, helo: str, sender: str, data: bytes
    ) -> Deferred[tuple[Authentication, _Broken]]:
        pool = self._threadpool if self._threadpool is not None else self._reactor.getThreadPool()
        return deferToThreadPool(
            self._reactor, pool, self._authenticate, peer_ip, helo, sender, data
        )

    def _from_cache(
        self, peer_ip: str, helo: str, sender: str, data: bytes
    ) -> tuple[Authentication, _Broken] | None:
        """In a worker thread: the checks if the DNS cache answers every question, else
        None (also when a library caught the miss: its result would be wrong)."""
        try:
            with self.lookup.cache_only():
                done = self._authenticate(peer_ip, helo, sender, data)
        except CacheMiss:
            return None
        return None if self.lookup.missed() else done

    def _reported(self, done: tuple[Authentication, _Broken], peer: str) -> Authentication:
        auth, broken = done
        for check, failure in broken:
            _log.failure(
                "Inbound {check} check failed; reporting temperror",
                failure,
                check=check,
                peer=peer,
            )
        return auth

    def _broken(self, failure: Failure, peer: str, helo: str, sender: str) -> Authentication:
        _log.failure("Inbound authentication failed; reporting temperror", failure, peer=peer)
        spf = _spf_error(helo, sender)
        return Authentication(
            spf=spf.result,
            spf_scope=spf.scope,
            spf_domain=spf.domain,
            dkim=(DKIMResult("temperror", reason="internal error"),),
            dmarc="temperror",
            from_domain=None,
            spf_reason=spf.reason,
            dmarc_reason="internal error",
        )

    def _authenticate(
        self, peer_ip: str, helo: str, sender: str, data: bytes
    ) -> tuple[Authentication, _Broken]:
        """In the worker thread: the three checks, each guarded."""
        broken: _Broken = []
        try:
            spf = check_spf(self.lookup, peer_ip, helo, sender)
        except Exception:
            broken.append(("SPF", Failure()))  # type: ignore[no-untyped-call, unused-ignore]
            spf = _spf_error(helo, sender)
        dkim: tuple[DKIMResult, ...]
        try:
            dkim = verify_dkim(self.lookup, data, self._max_signatures)
        except Exception:
            broken.append(("DKIM", Failure()))  # type: ignore[no-untyped-call, unused-ignore]
            dkim = (DKIMResult("temperror", reason="internal error"),)
        author: str | None = None
        try:
            author, why = author_domain(data)
            if author is None:
                result = "none" if why == "no From field" else "permerror"
                dmarc = DMARCOutcome(result=result, reason=why)  # type: ignore[arg-type]
            else:
                found = discover(self.lookup, author)
                dmarc = evaluate(author, found, spf.result, spf.domain, dkim, self._rng)
        except Exception:
            broken.append(("DMARC", Failure()))  # type: ignore[no-untyped-call, unused-ignore]
            dmarc = DMARCOutcome(result="temperror", reason="internal error")
        arc: tuple[ARCResult, int]
        try:
            arc = verify_arc(self.lookup, data)
        except Exception:
            broken.append(("ARC", Failure()))  # type: ignore[no-untyped-call, unused-ignore]
            arc = ("temperror", 0)
        auth = Authentication(
            spf=spf.result,
            spf_scope=spf.scope,
            spf_domain=spf.domain,
            dkim=dkim,
            dmarc=dmarc.result,
            from_domain=author,
            dmarc_policy=dmarc.policy,
            spf_reason=spf.reason,
            dmarc_reason=dmarc.reason,
            arc=arc[0],
            arc_instance=arc[1],
        )
        return auth, broken


def _spf_error(helo: str, sender: str) -> SPFOutcome:
    domain = sender.rpartition("@")[2].lower() if sender else helo.lower()
    return SPFOutcome(
        result="temperror",
        scope="mailfrom" if sender else "helo",
        domain=domain,
        reason="internal error",
    )
