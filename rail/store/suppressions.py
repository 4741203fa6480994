"""The per-client suppression list in the SQLite queue: addresses Rail will not send to.

An address is added when it bounced hard, when its owner complained, or by hand; sending
consults the list before a recipient is queued. Addresses are kept lower-cased: mailbox
providers treat local parts case-insensitively in practice, and a list that missed
``Bob@x`` after ``bob@x`` bounced would mail a dead address again. The functions run in the
caller's transaction on the writer thread (or, for reads, on the read thread).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final, Literal

import attrs

from rail.store.db import Connection

__all__ = [
    "REASONS",
    "SUPPRESSIONS_SCHEMA",
    "Known",
    "Reason",
    "Suppression",
    "assume_unlisted",
    "look_up",
    "normalize",
    "suppress",
    "suppressed",
    "unsuppress",
]

Reason = Literal["hard_bounce", "complaint", "manual"]
REASONS: Final = ("hard_bounce", "complaint", "manual")

SUPPRESSIONS_SCHEMA = """
CREATE TABLE suppressions (
    client TEXT NOT NULL,
    address TEXT NOT NULL,
    reason TEXT NOT NULL CHECK (reason IN ('hard_bounce', 'complaint', 'manual')),
    source TEXT NOT NULL,
    message_id TEXT,
    detail TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (client, address)
) WITHOUT ROWID;
CREATE INDEX suppressions_created ON suppressions (client, created_at);
"""


def normalize(address: str) -> str:
    """The form an address is listed and looked up in."""
    return address.strip().lower()


@attrs.frozen
class Suppression:
    """``source`` says what put it there (``rcpt``, ``dsn``, ``arf``, ``api``, ``cli``);
    ``message_id`` the message whose bounce or complaint did, if any; ``detail`` the remote
    reply or report text, for the operator."""

    client: str
    address: str = attrs.field(converter=normalize)
    reason: Reason
    source: str
    created_at: float
    message_id: str | None = None
    detail: str | None = None


def suppress(connection: Connection, entries: Iterable[Suppression]) -> None:
    """List ``entries``; an address already listed for the client keeps its first entry
    (the earliest evidence is what an operator needs to see)."""
    connection.executemany(
        "INSERT INTO suppressions (client, address, reason, source, message_id,"
        " detail, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (client, address) DO NOTHING",
        [
            (e.client, e.address, e.reason, e.source, e.message_id, e.detail, e.created_at)
            for e in entries
        ],
    )


def unsuppress(connection: Connection, client: str, address: str) -> bool:
    """Take ``address`` off ``client``'s list; whether it was on it."""
    cursor = connection.execute(
        "DELETE FROM suppressions WHERE client = ? AND address = ?", (client, normalize(address))
    )
    return cursor.rowcount > 0


Known = dict[tuple[str, str], "Suppression | None"]
"""Look-ups made ahead: ``(client, normalized address)`` to its entry, or None (not listed)."""

_PAIRS_PER_STATEMENT = 400


def look_up(connection: Connection, pairs: Iterable[tuple[str, str]]) -> Known:
    """Each ``(client, address)`` of ``pairs`` with its entry or None, in one statement per
    :data:`_PAIRS_PER_STATEMENT` pairs (primary-key look-ups): the writer reads a whole
    batch's recipients this way, not one round trip to the database per message."""
    wanted = list(dict.fromkeys((client, normalize(address)) for client, address in pairs))
    known: Known = dict.fromkeys(wanted)
    for start in range(0, len(wanted), _PAIRS_PER_STATEMENT):
        chunk = wanted[start : start + _PAIRS_PER_STATEMENT]
        rows = connection.execute(
            "SELECT client, address, reason, source, message_id, detail, created_at"  # noqa: S608
            " FROM suppressions WHERE (client, address) IN (VALUES "
            + ", ".join("(?, ?)" for _ in chunk)
            + ")",
            [value for pair in chunk for value in pair],
        ).fetchall()
        for client, address, reason, source, message_id, detail, created_at in rows:
            known[(client, address)] = Suppression(
                client=client,
                address=address,
                reason=reason,
                source=source,
                message_id=message_id,
                detail=detail,
                created_at=created_at,
            )
    return known


def assume_unlisted(pairs: Iterable[tuple[str, str]]) -> Known:
    """Look-ups that say none of ``pairs`` is listed, without asking: for a batch whose
    transaction ends with :func:`rail.store.pgschema.check_batch` over the same pairs."""
    return dict.fromkeys((client, normalize(address)) for client, address in pairs)


def suppressed(
    connection: Connection,
    client: str,
    addresses: Sequence[str],
    known: Known | None = None,
) -> dict[str, Suppression]:
    """Which of ``addresses`` are on ``client``'s list, by the address as given: one
    primary-key look-up per distinct address, so the cost is the message's, not the list's
    (none when ``known`` holds every one of them: :func:`look_up`)."""
    if known is not None:
        keys = [(client, normalize(address)) for address in addresses]
        if all(key in known for key in keys):
            return {
                address: attrs.evolve(entry, address=address)
                for address, key in zip(addresses, keys, strict=True)
                if (entry := known[key]) is not None
            }
    found: dict[str, Suppression] = {}
    for address in dict.fromkeys(addresses):
        row = connection.execute(
            "SELECT reason, source, message_id, detail, created_at FROM suppressions"
            " WHERE client = ? AND address = ?",
            (client, normalize(address)),
        ).fetchone()
        if row is not None:
            found[address] = Suppression(
                client=client,
                address=address,
                reason=row[0],
                source=row[1],
                message_id=row[2],
                detail=row[3],
                created_at=row[4],
            )
    return found
