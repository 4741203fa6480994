"""Which stores several worker processes may share (``workers``, ``storage.backend``).

Here rather than with the workers (:mod:`rail.workers`) because the configuration
refuses the combination itself, so that ``rail config-check`` reports it.
"""

from __future__ import annotations

__all__ = ["sqlite_refusal"]


def sqlite_refusal(workers: int, backend: str) -> str | None:
    """Why ``workers`` processes cannot share the ``backend`` store (said of the
    ``workers`` setting), or None when they can.

    SQLite has one writer and its claims of due work hold no lease another process could
    see expire, so two processes on one SQLite queue could deliver a message twice.
    """
    if workers > 1 and backend == "sqlite":
        return (
            f"{workers} worker processes need storage.backend: postgresql"
            " (SQLite's queue is for one process); set workers: 1 or use PostgreSQL"
        )
    return None
