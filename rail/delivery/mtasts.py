"""Recipient domains' MTA-STS policies for delivery: cached, refreshed, persisted.

:meth:`STSPolicies.policy` answers from memory in O(1) once a domain is known: a fresh
entry as it is, a stale one (see :mod:`rail.delivery.stscache`) as it is while a refresh
runs in the background, so a delivery never waits for HTTPS once its domain's policy is
cached. A domain not yet known (or whose policy expired) waits for its TXT lookup, which
the routing step runs alongside the MX lookup, and, if the domain publishes a policy, for
one fetch; concurrent deliveries to that domain share the lookup. A failed fetch is
reported (a :class:`~rail.delivery.tlsreport.TLSOutcome`) and logged, and a cached,
unexpired policy stays in use (RFC 8461 §5.1).

Fetched policies are kept in ``path`` (JSON, :func:`~rail.delivery.stscache.dump_entries`)
so a restart does not forget them, which would open a window for a downgrade. The file is
read and written in a thread (``run_in_thread``), written at most every ``save_delay``
seconds after a change, and once more when the service stops.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from rail.delivery.stscache import (
    CachedPolicy,
    Entry,
    NoPolicy,
    after_fetch,
    after_txt,
    dump_entries,
    freshness,
    load_entries,
)
from rail.delivery.stsfetch import Fetched
from rail.delivery.tlsreport import DISCARD, TLSOutcome, TLSOutcomeSink

__all__ = ["MAX_ENTRIES", "STSPolicies"]

_log = Logger()

MAX_ENTRIES = 100_000
"""Domains remembered; beyond it, domains without a policy are forgotten first."""


class IFetcher(Protocol):
    """What :class:`STSPolicies` needs of :class:`~rail.delivery.stsfetch.PolicyFetcher`."""

    def policy_id(self, domain: str) -> Any: ...
    def fetch(self, domain: str) -> Deferred[Fetched]: ...


class STSPolicies:
    """See the module docstring."""

    def __init__(
        self,
        clock: IReactorTime,
        fetcher: IFetcher,
        *,
        outcomes: TLSOutcomeSink = DISCARD,
        path: Path | None = None,
        run_in_thread: Callable[[Callable[[], Any]], Deferred[Any]] | None = None,
        save_delay: float = 10.0,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        if path is not None and run_in_thread is None:
            raise ValueError("a cache file needs run_in_thread")
        self._clock = clock
        self._fetcher = fetcher
        self._outcomes = outcomes
        self._path = path
        self._in_thread = run_in_thread
        self._save_delay = save_delay
        self._max_entries = max_entries
        self._entries: dict[str, Entry] = {}
        self._lookups: dict[str, Deferred[Entry]] = {}
        self._save: IDelayedCall | None = None
        self._saving: Deferred[Any] | None = None
        self._running = True

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Deferred[None]:
        """Read the cache file (in a thread); fires once it is in memory."""
        if self._path is None or self._in_thread is None:
            return succeed(None)
        path, now = self._path, self._clock.seconds()

        def read() -> dict[str, CachedPolicy]:
            try:
                return load_entries(path.read_bytes(), now)
            except FileNotFoundError:
                return {}

        def loaded(entries: dict[str, CachedPolicy]) -> None:
            for domain, entry in entries.items():
                self._entries.setdefault(domain, entry)

        def failed(failure: Failure) -> None:
            _log.warn(
                "cannot read the MTA-STS cache {path}: {error}",
                path=str(path),
                error=failure.getErrorMessage(),
            )

        return self._in_thread(read).addCallbacks(loaded, failed)

    def stop(self) -> Deferred[None]:
        """Stop refreshing, write the cache once more; fires when written."""
        self._running = False
        if self._save is not None and self._save.active():
            self._save.cancel()
        self._save = None
        for lookup in list(self._lookups.values()):
            lookup.cancel()
        return self._write()

    # -- answers --------------------------------------------------------------------------

    def policy(self, domain: str) -> Deferred[CachedPolicy | None]:
        """``domain``'s policy (lower-case A-label), or None if it has none usable."""
        entry = self._entries.get(domain)
        state = freshness(entry, self._clock.seconds())
        if state == "missing" or entry is None:
            return self._lookup(domain).addCallback(_usable)
        if state == "stale" and self._running and domain not in self._lookups:
            self._lookup(domain)
        return succeed(_usable(entry))

    @property
    def cached(self) -> int:
        """Domains with a policy in memory."""
        return sum(isinstance(e, CachedPolicy) for e in self._entries.values())

    # -- lookups --------------------------------------------------------------------------

    def _lookup(self, domain: str) -> Deferred[Entry]:
        """The one running lookup of ``domain`` (started if none); never fails."""
        running = self._lookups.get(domain)
        if running is None:
            running = Deferred.fromCoroutine(self._refresh(domain))
            running.addErrback(self._lookup_failed, domain)
            self._lookups[domain] = running
            running.addBoth(self._lookup_done, domain)
        result: Deferred[Entry] = Deferred()

        def relay(entry: Any) -> Any:
            result.callback(entry)
            return entry

        running.addBoth(relay)
        return result

    def _lookup_done(self, entry: Entry, domain: str) -> Entry:
        self._lookups.pop(domain, None)
        return entry

    def _lookup_failed(self, failure: Failure, domain: str) -> Entry:
        if not failure.check(CancelledError):
            _log.failure("MTA-STS lookup of {domain} failed", failure, domain=domain)
        return self._entries.get(domain) or NoPolicy(self._clock.seconds())

    async def _refresh(self, domain: str) -> Entry:
        txt_id = await self._fetcher.policy_id(domain)
        entry = self._entries.get(domain)
        updated = after_txt(entry, txt_id, self._clock.seconds())
        if updated is None:
            assert txt_id is not None
            fetched = await self._fetcher.fetch(domain)
            if fetched.policy is None:
                self._fetch_failed(domain, fetched)
            else:
                self._dirty()
            updated = after_fetch(
                self._entries.get(domain), txt_id, fetched.policy, self._clock.seconds()
            )
        self._store(domain, updated)
        return updated

    def _fetch_failed(self, domain: str, fetched: Fetched) -> None:
        result = fetched.result or "sts-policy-fetch-error"
        kept = isinstance(self._entries.get(domain), CachedPolicy)
        _log.info(
            "MTA-STS policy of {domain} not fetched ({result}: {reason}); {fallback}",
            domain=domain,
            result=result,
            reason=fetched.reason,
            fallback="the cached policy stays in use" if kept else "delivering without it",
        )
        self._outcomes.record(
            TLSOutcome(
                policy_domain=domain,
                policy_type="sts",
                result=result,
                failure_reason=fetched.reason,
            )
        )

    def _store(self, domain: str, entry: Entry) -> None:
        if domain not in self._entries and len(self._entries) >= self._max_entries:
            self._prune()
        self._entries[domain] = entry

    def _prune(self) -> None:
        """Forget domains without a usable policy (amortized: runs once per
        ``max_entries`` new domains at most); if that is not enough, every one."""
        now = self._clock.seconds()
        self._entries = {
            d: e for d, e in self._entries.items() if isinstance(e, CachedPolicy) and e.usable(now)
        }
        if len(self._entries) >= self._max_entries:
            self._entries.clear()

    # -- persistence ----------------------------------------------------------------------

    def _dirty(self) -> None:
        if self._path is None or not self._running:
            return
        if self._save is None or not self._save.active():
            self._save = self._clock.callLater(self._save_delay, self._write)

    def _write(self) -> Deferred[None]:
        """Write the policies (serialized and written in the thread; one write at a
        time, a later one waiting for the earlier)."""
        self._save = None
        path, run = self._path, self._in_thread
        if path is None or run is None:
            return succeed(None)
        snapshot = dict(self._entries)
        previous = self._saving

        def write() -> None:
            data = dump_entries(snapshot)
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(path.name + ".tmp")
            with open(temporary, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)

        def failed(failure: Failure) -> None:
            _log.warn(
                "cannot write the MTA-STS cache {path}: {error}",
                path=str(path),
                error=failure.getErrorMessage(),
            )

        done: Deferred[None] = Deferred()

        def go(_: object = None) -> object:
            written = run(write).addCallbacks(lambda _: None, failed)
            written.addBoth(lambda _: done.callback(None))
            return _

        if previous is None or previous.called:
            go()
        else:
            previous.addBoth(go)
        self._saving = done
        return done


def _usable(entry: Entry) -> CachedPolicy | None:
    return entry if isinstance(entry, CachedPolicy) else None
