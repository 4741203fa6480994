"""What a running node does when told that another changed the shared DKIM keys.

``rail dkim rotate`` on any host, the console's rotation on another node, or another node
making keys for a new domain stores the files and notifies ``files``
(:mod:`rail.shared.mirror`); this node then copies them, re-reads its key store (as
SIGHUP does) in a thread, and rebuilds its zones, so it signs with and publishes the same
selectors as every other node.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from rail.dkim.keys import DKIMKeyError, KeyStore
from rail.shared.mirror import MirrorError, pull
from rail.shared.registry import SharedSource

__all__ = ["follow_dkim"]

_log = Logger()

InThread = Callable[[Callable[[], Any]], "defer.Deferred[Any]"]


def follow_dkim(
    source: SharedSource,
    data_dir: Path,
    keys: KeyStore,
    zones: Callable[[], object] | None,
    in_thread: InThread,
) -> Callable[[], defer.Deferred[Any]]:
    """The handler of the ``files`` topic: copy ``dkim/``, reload ``keys`` if anything
    changed (in a thread), then call ``zones()`` (the DNS service's refresh). A copy or
    reload that fails is logged and the keys in use stay."""

    def work() -> int:
        changed = pull(source, data_dir, ("dkim/",))
        if changed:
            keys.reload()
        return changed

    def follow() -> defer.Deferred[Any]:
        done: defer.Deferred[Any] = in_thread(work)

        def rebuild(changed: int) -> Any:
            if changed and zones is not None:
                return zones()
            return None

        def failed(failure: Any) -> None:
            failure.trap(MirrorError, DKIMKeyError)
            _log.error("DKIM keys not reloaded: {error}", error=failure.getErrorMessage())

        return done.addCallback(rebuild).addErrback(failed)

    return follow
