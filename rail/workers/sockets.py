"""The parent's listening sockets: bound once, before privileges are dropped, and handed
to every worker (or, with ``reuseport``, one set per worker).

Bound with the socket module rather than the reactor because the parent never accepts on
them; the workers adopt them (:mod:`rail.workers.adopt`). Bound as Twisted's
``listenTCP`` and ``listenUDP`` would: ``SO_REUSEADDR`` on TCP, the listener's backlog,
non-blocking.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping

from rail.config import Config
from rail.config.listen import ListenSpec
from rail.listener import ListenError
from rail.workers.plan import SOCKETS, Balance, copies

__all__ = ["ListeningSockets", "bind_all", "close_all", "listen_specs"]

_BIND_TRIES = 20  # DNS on port 0: UDP and TCP need the same free port

ListeningSockets = dict[str, list[socket.socket]]
"""Socket name (see :data:`rail.workers.plan.SOCKETS`) -> its copies."""


def listen_specs(config: Config) -> dict[str, ListenSpec]:
    """Each socket a worker may get and where it binds, in :data:`SOCKETS` order."""
    listen = config.listen
    found = {
        "submission": listen.submission,
        "inbound": listen.inbound,
        "https": listen.https,
        "http": listen.http,
        "dns": listen.dns,
        "dns-udp": listen.dns,
    }
    return {name: spec for name, _ in SOCKETS if (spec := found[name]) is not None}


def bind_all(config: Config, balance: Balance, workers: int) -> ListeningSockets:
    """Bind every configured listener; ListenError (naming the ``listen`` key) when one
    cannot be bound, after closing those that were."""
    specs = listen_specs(config)
    count = copies(balance, workers)
    reuse = balance == "reuseport"
    bound: ListeningSockets = {}
    try:
        for name, spec in specs.items():
            if name == "dns-udp":
                continue  # bound with its TCP twin
            if name == "dns":
                bound["dns"], bound["dns-udp"] = _bind_dns(spec, count, reuse)
            else:
                bound[name] = _bind_copies(name, spec, socket.SOCK_STREAM, count, reuse)
    except BaseException:
        for sockets in bound.values():
            for s in sockets:
                s.close()
        raise
    return {name: bound[name] for name in specs}


def close_all(sockets: Mapping[str, list[socket.socket]]) -> None:
    for copies_ in sockets.values():
        for s in copies_:
            s.close()


def _bind_copies(
    name: str, spec: ListenSpec, kind: int, count: int, reuse: bool, port: int | None = None
) -> list[socket.socket]:
    made: list[socket.socket] = []
    try:
        for _ in range(count):
            s = _bound(name, spec, kind, reuse, spec.port if port is None else port)
            made.append(s)
            port = s.getsockname()[1]  # port 0: the copies share the first one's port
    except BaseException:
        for s in made:
            s.close()
        raise
    return made


def _bind_dns(
    spec: ListenSpec, count: int, reuse: bool
) -> tuple[list[socket.socket], list[socket.socket]]:
    """DNS's TCP and UDP sockets, on one port (a free one when ``spec.port`` is 0)."""
    tries = _BIND_TRIES if spec.port == 0 else 1
    for attempt in range(tries):
        udp = _bind_copies("dns", spec, socket.SOCK_DGRAM, count, reuse)
        port = udp[0].getsockname()[1]
        try:
            tcp = _bind_copies("dns", spec, socket.SOCK_STREAM, count, reuse, port)
        except ListenError:
            for s in udp:
                s.close()
            if attempt == tries - 1:
                raise
            continue
        return tcp, udp
    raise AssertionError("unreachable")


def _bound(name: str, spec: ListenSpec, kind: int, reuse: bool, port: int) -> socket.socket:
    family = socket.AF_INET6 if spec.kind == "tcp6" else socket.AF_INET
    s = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((spec.interface, port))
        if kind == socket.SOCK_STREAM:
            s.listen(spec.backlog)
        s.setblocking(False)
    except OSError as error:
        s.close()
        where = f"{spec.interface}:{port}"
        reason = error.strerror or str(error)
        raise ListenError(f"listen.{name}: cannot listen on {where}: {reason}") from None
    return s
