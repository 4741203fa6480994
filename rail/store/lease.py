"""Who holds a claimed job: the node id written into ``claimed_by``.

Several processes (and hosts) share one PostgreSQL queue; a claim writes the claiming
process's id and a lease end into the job's row, so no other process takes the job until
the lease ends, and a result recorded under a lease another process has since taken is
ignored. The id is made once per process: a restarted process is a new node, so it never
mistakes its predecessor's leases for its own.
"""

from __future__ import annotations

import os
import socket

from ulid import ULID

__all__ = ["LEASE_SECONDS", "node_id"]

LEASE_SECONDS = 60.0
"""How long a claim holds a job without being renewed; a node that dies loses its jobs
to the others after at most this long."""

_NODE: tuple[int, str] | None = None


def node_id() -> str:
    """``host/pid/ulid``, the same for the life of this process (a forked child gets its own)."""
    global _NODE
    pid = os.getpid()
    if _NODE is None or _NODE[0] != pid:
        _NODE = (pid, f"{socket.gethostname()}/{pid}/{ULID()}")
    return _NODE[1]
