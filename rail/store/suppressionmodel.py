"""What the suppression list API asks of the queue, and what it answers.

Plain values, the opaque page cursor and the :class:`ISuppressionList` interface, shared
by the SQLite store (:mod:`rail.store.suppressionlist` holds its SQL), the in-memory fake
and the HTTP resources (:mod:`rail.web.suppressions`).

A listing is newest first, through the ``suppressions_created`` index (client, time,
address). ``prefix`` walks the primary key (client, address) in address order instead:
that search is indexed. ``q`` (a substring anywhere in the address) is not: it examines
at most :data:`SUPPRESSION_SCAN` entries per page newest first, and a page that examined
them all without filling up still carries a cursor to go on from.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import attrs
from zope.interface import Interface

from rail.store.suppressions import Suppression

__all__ = [
    "MAX_SUPPRESSION_PAGE",
    "SUPPRESSION_SCAN",
    "ISuppressionList",
    "SuppressionCursor",
    "SuppressionPage",
    "SuppressionQuery",
    "decode_cursor",
    "encode_cursor",
]

MAX_SUPPRESSION_PAGE = 500
"""The most entries one page holds."""

SUPPRESSION_SCAN = 5000
"""The most entries a ``q`` search examines per page."""


@attrs.frozen
class SuppressionCursor:
    """Where a page ended: the last entry's time and address."""

    created_at: float
    address: str


def encode_cursor(cursor: SuppressionCursor) -> str:
    """An opaque URL-safe token for ``cursor``."""
    raw = json.dumps([cursor.created_at, cursor.address], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(token: str) -> SuppressionCursor | None:
    """The cursor ``token`` encodes, or None if it is not one :func:`encode_cursor` made."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], int | float)
        or isinstance(value[0], bool)
        or not isinstance(value[1], str)
    ):
        return None
    return SuppressionCursor(float(value[0]), value[1])


@attrs.frozen
class SuppressionQuery:
    """A page of ``client``'s list: newest first, or in address order from ``prefix``;
    ``q``: only addresses containing it (lower-cased, as addresses are listed)."""

    client: str
    limit: int = 50
    cursor: SuppressionCursor | None = None
    q: str | None = None
    prefix: str | None = None


@attrs.frozen
class SuppressionPage:
    entries: tuple[Suppression, ...]
    next_cursor: SuppressionCursor | None


class ISuppressionList(Interface):
    """Each client's suppression list as the API and ``rail suppressions`` see it. Every
    method returns a Deferred; the SQL runs on the store's threads, never the reactor."""

    def list_suppressions(query: SuppressionQuery) -> Any:  # noqa: N805
        """Fires with a :class:`SuppressionPage`."""

    def get_suppression(client: str, address: str) -> Any:  # noqa: N805
        """Fires with ``client``'s entry for ``address`` (any case), or None."""

    def add_suppression(entry: Suppression) -> Any:  # noqa: N805
        """List ``entry``; fires with ``(the entry listed, whether it is new)``: an address
        already listed keeps its first entry."""

    def remove_suppression(client: str, address: str) -> Any:  # noqa: N805
        """Take ``address`` off ``client``'s list; fires with whether it was on it."""
