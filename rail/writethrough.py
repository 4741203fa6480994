"""TCP connections that send at once when nothing is waiting to be sent.

Twisted's ``write`` only buffers: it registers the socket for writability (one
``epoll_ctl``), sends on the next reactor iteration, then unregisters it (another
``epoll_ctl``). An SMTP session answers every command with a short reply and an HTTP
client writes one request, so that is three system calls and an extra trip through the
reactor for every reply. Profiles of the inbound benchmark put the registering and
unregistering at 7% of the reactor thread and the deferred ``doWrite`` machinery at about
as much again.

When nothing is buffered, :class:`WriteThroughServer` calls ``send`` directly; whatever
the kernel does not take (or an error) goes through Twisted's own path, so ordering,
producers, half-close and connection loss behave exactly as before. A connection that
has started TLS in place (STARTTLS) keeps Twisted's path, because its bytes must pass
through the TLS layer first.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

__all__ = ["WriteThroughServer", "use_write_through"]


class WriteThroughServer(tcp.Server):
    """A server-side TCP connection whose ``write`` sends at once when it can."""

    def write(self, data: bytes) -> None:
        if (
            type(data) is bytes
            and data
            and self.connected
            and not self.TLS
            and not self.disconnecting
            and not self._writeDisconnected
            and not self._tempDataLen
            and self.offset == len(self.dataBuffer)
        ):
            sent = self.writeSomeData(data)
            if isinstance(sent, int):
                if sent == len(data):
                    return
                data = data[sent:]
            # An error: buffer as usual; the reactor's doWrite meets it again and
            # reports the lost connection the normal way.
        super().write(data)


def use_write_through(port: Any) -> None:
    """Make ``port`` (a listening port from an endpoint) create write-through
    connections; any other kind of port is left alone."""
    if isinstance(port, tcp.Port) and port.transport is tcp.Server:
        port.transport = WriteThroughServer
