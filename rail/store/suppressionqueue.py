""":class:`ISuppressionList` for the SQLite store: reads on its read thread, changes on
its writer.

A mixin of :class:`rail.store.queuestore.QueueStore`, like :mod:`rail.store.adminqueue`.
Adds and removals are writer operations inside its batch transaction, so a send accepted
after an add is answered is checked against the new list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from rail.store import suppressionlist
from rail.store.ops import AdminOp
from rail.store.suppressionmodel import SuppressionQuery
from rail.store.suppressions import Suppression

__all__ = ["SQLiteSuppressions"]


class SQLiteSuppressions:
    """Needs ``_submit(make) -> Deferred`` and ``_read(read) -> Deferred`` from the store."""

    def _submit(self, make: Callable[[Any], Any]) -> Deferred[Any]:
        raise NotImplementedError

    def _read(self, read: Callable[[Any], Any]) -> Deferred[Any]:
        raise NotImplementedError

    def list_suppressions(self, query: SuppressionQuery) -> Deferred[Any]:
        """A :class:`~rail.store.suppressionmodel.SuppressionPage`."""
        return self._read(lambda c: suppressionlist.list_entries(c, query))

    def get_suppression(self, client: str, address: str) -> Deferred[Any]:
        """The entry, or None."""
        return self._read(lambda c: suppressionlist.get_entry(c, client, address))

    def add_suppression(self, entry: Suppression) -> Deferred[Any]:
        """(the entry listed, whether it is new)."""
        return self._submit(
            lambda token: AdminOp(
                lambda c: (suppressionlist.add_entry(c, entry), 0), write=True, token=token
            )
        )

    def remove_suppression(self, client: str, address: str) -> Deferred[Any]:
        """Whether it was listed."""
        return self._submit(
            lambda token: AdminOp(
                lambda c: (suppressionlist.remove_entry(c, client, address), 0),
                write=True,
                token=token,
            )
        )
