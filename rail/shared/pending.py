"""When the oldest mail still waiting for delivery was received, across every node.

DKIM keeps a replaced generation published while queued mail may still be signed with it
(:meth:`rail.dkim.keys.KeyStore.published`). With several nodes the queue is the shared
database's, so ``rail dkim show``, ``rail dns records`` and the zones ask it there: the
same indexed query as the embedded queue's
(:func:`rail.store.deliveries.oldest_pending_received_at`), on a connection to the
database's default schema, where the queue's tables are.
"""

from __future__ import annotations

import psycopg

from rail.config import Config
from rail.store.db import DATABASE_ERRORS
from rail.store.deliveries import oldest_pending_received_at as pending_since
from rail.store.inspect import oldest_pending_received_at
from rail.store.model import StoreUnavailableError
from rail.store.pg import connect

__all__ = ["oldest_pending"]


def oldest_pending(config: Config) -> float | None:
    """When the oldest pending message was received (None: nothing pending, or no queue
    yet); blocking. Raises StoreUnavailableError when the queue cannot be read."""
    if config.storage.backend != "postgresql" or config.storage.dsn is None:
        return oldest_pending_received_at(config.data_dir / "queue")
    try:
        connection = connect(config.storage.dsn, application_name="rail-cli")
    except DATABASE_ERRORS as e:
        raise StoreUnavailableError(f"the shared database: cannot connect ({e})") from e
    try:
        return pending_since(connection)
    except psycopg.errors.UndefinedTable:
        return None  # no node has made the queue's tables yet: nothing is pending
    except DATABASE_ERRORS as e:
        raise StoreUnavailableError(f"the shared database: cannot read the queue ({e})") from e
    finally:
        connection.close()
