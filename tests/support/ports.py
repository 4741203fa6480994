"""Loopback ports for the real servers tests start."""

from __future__ import annotations

import socket

__all__ = ["free_port"]

_given: set[int] = set()


def free_port() -> int:
    """A port of 127.0.0.1 free for both TCP and UDP now, and never handed out before by
    this process. Asked for several ports in a row (one per listener of a Rail), the
    kernel can answer the same free port twice, since nothing holds the first one yet: a
    Rail was then given one port for two listeners and did not start. A DNS listener
    takes the port for both UDP and TCP."""
    while True:
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in _given:
            _given.add(port)
            return port
