""":class:`ISuppressionList` for :class:`rail.testing.MemoryStore`: the same answers as
the SQLite store's (:mod:`rail.store.suppressionlist`), checked by the same contract tests."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed

from rail.store.suppressionmodel import (
    MAX_SUPPRESSION_PAGE,
    SUPPRESSION_SCAN,
    SuppressionCursor,
    SuppressionPage,
    SuppressionQuery,
)
from rail.store.suppressions import Suppression, normalize

__all__ = ["MemorySuppressions"]


def _cursor(entry: Suppression) -> SuppressionCursor:
    return SuppressionCursor(entry.created_at, entry.address)


class MemorySuppressions:
    """Mixed into MemoryStore, whose ``suppressions`` (by (client, address)) it uses."""

    suppressions: dict[tuple[str, str], Suppression]

    def list_suppressions(self, query: SuppressionQuery) -> Deferred[SuppressionPage]:
        """A page, by the rules of :func:`rail.store.suppressionlist.list_entries`."""
        limit = max(1, min(query.limit, MAX_SUPPRESSION_PAGE))
        mine = [e for (client, _), e in self.suppressions.items() if client == query.client]
        cursor = query.cursor
        if query.prefix is not None:
            prefix = normalize(query.prefix)
            chosen = sorted(
                (
                    e
                    for e in mine
                    if e.address.startswith(prefix)
                    and (cursor is None or e.address > cursor.address)
                ),
                key=lambda e: e.address,
            )[:limit]
            return succeed(
                SuppressionPage(
                    tuple(chosen), _cursor(chosen[-1]) if len(chosen) == limit else None
                )
            )
        ordered = sorted(mine, key=lambda e: (e.created_at, e.address), reverse=True)
        if cursor is not None:
            ordered = [
                e
                for e in ordered
                if (e.created_at, e.address) < (cursor.created_at, cursor.address)
            ]
        if query.q is None:
            chosen = ordered[:limit]
            return succeed(
                SuppressionPage(
                    tuple(chosen), _cursor(chosen[-1]) if len(chosen) == limit else None
                )
            )
        needle = query.q.strip().lower()
        examined = ordered[:SUPPRESSION_SCAN]
        found: list[Suppression] = []
        for entry in examined:
            if needle in entry.address:
                found.append(entry)
                if len(found) == limit:
                    return succeed(SuppressionPage(tuple(found), _cursor(entry)))
        if len(examined) < SUPPRESSION_SCAN:
            return succeed(SuppressionPage(tuple(found), None))
        return succeed(SuppressionPage(tuple(found), _cursor(examined[-1])))

    def get_suppression(self, client: str, address: str) -> Deferred[Suppression | None]:
        """The entry, or None."""
        return succeed(self.suppressions.get((client, normalize(address))))

    def add_suppression(self, entry: Suppression) -> Deferred[tuple[Suppression, bool]]:
        """(the entry listed, whether it is new)."""
        existing = self.suppressions.get((entry.client, entry.address))
        if existing is not None:
            return succeed((existing, False))
        self.suppressions[(entry.client, entry.address)] = entry
        return succeed((entry, True))

    def remove_suppression(self, client: str, address: str) -> Deferred[bool]:
        """Whether it was listed."""
        return succeed(self.suppressions.pop((client, normalize(address)), None) is not None)
