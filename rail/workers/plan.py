"""Worker processes: how many, which listening socket each gets at which descriptor, and
which one does the work that must run once per host. Pure decisions over plain values.

The parent (:mod:`rail.workers.supervisor`) binds every listener and starts the workers
with the sockets at fixed descriptors; each worker reads where its sockets are from the
``RAIL_WORKER`` environment variable (:func:`encode` / :func:`decode`) and adopts them.

A worker's descriptors: 0 is a pipe from the parent (end of file: the parent is gone),
1 and 2 its log output, 3 the status lines it writes to the parent (``READY=1``,
``STOPPING=1``, ``RELOAD=1``), and from 4 on its listening sockets, in the order of :data:`SOCKETS`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Literal

import attrs

__all__ = [
    "AUTO",
    "BALANCES",
    "ENVIRONMENT",
    "FIRST_SOCKET_FD",
    "SOCKETS",
    "STATUS_FD",
    "Balance",
    "WorkerSpec",
    "copies",
    "decode",
    "descriptor_plan",
    "encode",
    "worker_count",
]

AUTO = "auto"
"""``workers: auto``: one worker per core."""

ENVIRONMENT = "RAIL_WORKER"
"""The environment variable that makes ``twistd rail`` a worker and says where its sockets are."""

STATUS_FD = 3
FIRST_SOCKET_FD = 4

Balance = Literal["shared", "reuseport"]
BALANCES: tuple[Balance, ...] = ("shared", "reuseport")
"""How connections are spread: ``shared``, one listening socket per listener that every
worker accepts from; ``reuseport``, one socket per listener and worker, bound with
``SO_REUSEPORT`` so that the kernel spreads connections over them."""

SocketKind = Literal["stream", "datagram"]

SOCKETS: tuple[tuple[str, SocketKind], ...] = (
    ("submission", "stream"),
    ("inbound", "stream"),
    ("https", "stream"),
    ("http", "stream"),
    ("dns", "stream"),
    ("dns-udp", "datagram"),
)
"""Every listening socket a worker may get, by name: a listener's name in ``listen``,
and ``dns-udp`` for DNS's datagram socket (``dns`` is its TCP socket)."""


def worker_count(setting: int | str, cpus: int | None) -> int:
    """The number of workers ``setting`` (a number, or ``auto``) asks for on a machine
    with ``cpus`` cores (None when unknown: one)."""
    if setting == AUTO:
        return max(1, cpus or 1)
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"expected a number of workers from 1, or {AUTO!r}, got {setting!r}")
    return setting


def copies(balance: Balance, workers: int) -> int:
    """How many sockets the parent binds per listener."""
    return workers if balance == "reuseport" else 1


def descriptor_plan(
    names: Iterable[str], index: int, balance: Balance
) -> dict[int, tuple[str, int]]:
    """Worker ``index``'s descriptors: descriptor -> (socket name, which copy of it).

    ``names`` are the sockets bound (in :data:`SOCKETS` order); with ``shared`` every
    worker gets copy 0, with ``reuseport`` worker ``index`` gets its own copy.
    """
    copy = index if balance == "reuseport" else 0
    return {FIRST_SOCKET_FD + n: (name, copy) for n, name in enumerate(names)}


@attrs.frozen
class WorkerSpec:
    """What a worker knows of its place: its index, how many there are, its sockets."""

    index: int
    """0 to ``count`` - 1; worker 0 also does the once-per-host work."""
    count: int
    fds: Mapping[str, int] = attrs.field(factory=dict)
    """Socket name (see :data:`SOCKETS`) -> the descriptor it is at in this worker."""
    peers: str = ""
    """The directory where the workers serve their metrics to each other
    (:mod:`rail.workers.metrics`); empty: none."""

    @property
    def runs_singletons(self) -> bool:
        """Whether this worker does what must run once per host: ACME orders, retention
        purges, sending TLS-RPT reports."""
        return self.index == 0


def encode(spec: WorkerSpec) -> str:
    """The ``RAIL_WORKER`` value for ``spec``."""
    return json.dumps(
        {
            "index": spec.index,
            "count": spec.count,
            "fds": dict(spec.fds),
            "peers": spec.peers,
        }
    )


def decode(text: str) -> WorkerSpec:
    """The :class:`WorkerSpec` in a ``RAIL_WORKER`` value; ValueError when malformed."""
    try:
        value = json.loads(text)
        index, count, fds = value["index"], value["count"], value["fds"]
        peers = value.get("peers", "")
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{ENVIRONMENT}: not a worker description: {error}") from None
    known = {name for name, _ in SOCKETS}
    if (
        not all(isinstance(n, int) and not isinstance(n, bool) for n in (index, count))
        or not 0 <= index < count
        or not isinstance(fds, dict)
        or not all(name in known and isinstance(fd, int) for name, fd in fds.items())
        or not isinstance(peers, str)
    ):
        raise ValueError(f"{ENVIRONMENT}: not a worker description: {text!r}")
    return WorkerSpec(index=index, count=count, fds=fds, peers=peers)
