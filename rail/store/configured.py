"""The queue store ``storage.backend`` names, opened from the configuration.

``sqlite`` (the default): the embedded queue under ``data_dir/queue``, bounded by
``storage.max_queued`` and ``storage.min_free_space``, with its disk reserve.
``postgresql``: the database of ``storage.dsn``, shared with the other nodes; only
``storage.max_queued`` applies (free space is the database server's concern), and its
claims hold their jobs for ``storage.lease`` (docs/scaling.md); a SQLite queue still
holding pending work under ``data_dir`` refuses it (:mod:`rail.store.leftover`).
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorFromThreads

from rail.config.schema import Config
from rail.store.leftover import refuse_leftover
from rail.store.postgres import PostgresStore
from rail.store.queuestore import QueueStore
from rail.store.sqlite import SQLiteStore

__all__ = ["open_store"]


def open_store(config: Config, reactor: IReactorFromThreads) -> QueueStore:
    """Open (creating or migrating) the configured store; raises StoreUnavailableError
    with one line naming the file, or the server and database, when it cannot be used."""
    storage = config.storage
    if storage.backend == "postgresql":
        assert storage.dsn is not None  # the configuration requires it
        refuse_leftover(config.data_dir / "queue")  # a SQLite queue's mail is not carried over
        return PostgresStore.open(
            storage.dsn, reactor, max_queued=storage.max_queued, lease=storage.lease
        )
    return SQLiteStore.open(
        config.data_dir / "queue",
        reactor,
        max_queued=storage.max_queued,
        min_free_bytes=storage.min_free_space,
        reserve_bytes=storage.reserve,
    )
