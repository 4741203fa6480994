"""Telling systemd that Rail is ready or stopping (``Type=notify``), without libsystemd.

systemd passes a Unix datagram socket in ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the
abstract namespace); a service reports its state by sending lines such as ``READY=1`` to
it. Rail sends ``READY=1`` once every listener is bound and ``STOPPING=1`` when shutdown
begins; without ``$NOTIFY_SOCKET`` (not under systemd) nothing is sent.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["notify"]


def notify(state: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """Send ``state`` (e.g. ``"READY=1"``) to ``$NOTIFY_SOCKET``.

    One non-blocking datagram: it never waits for systemd. Returns ``None`` when sent or
    when there is no socket to send to, else why it failed (for the caller's log line);
    a lost notification must not stop Rail.
    """
    address = environ.get("NOTIFY_SOCKET", "")
    if not address:
        return None
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return f"NOTIFY_SOCKET={address!r} is neither a path nor an abstract name"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sender:
            sender.setblocking(False)
            sender.sendto(state.encode("utf-8"), address)
    except OSError as error:
        return f"cannot notify systemd at {environ['NOTIFY_SOCKET']}: {error.strerror or error}"
    return None
