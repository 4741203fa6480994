"""rail.workers.sockets: the parent's listening sockets, bound as Twisted would."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rail.config import parse_config
from rail.listener import ListenError
from rail.workers.sockets import bind_all, close_all


def _config(**listen: str | None) -> Any:
    every = {"https": None, "submission": None, "inbound": None, "http": None, "dns": None}
    data = {
        "hostname": "mail.example.com",
        "tls": {"self_signed": True},
        "listen": {**every, **listen},
    }
    return parse_config(data, Path("/"))


class BindTests(SynchronousTestCase):
    def bind(self, config: Any, balance: Any, workers: int) -> Any:
        bound = bind_all(config, balance, workers)
        self.addCleanup(close_all, bound)
        return bound

    def test_reuseport_copies_share_a_port(self) -> None:
        """With reuseport each listener has one listening socket per worker, all on the
        port the first was given (port 0: a free one), in the order workers expect."""
        bound = self.bind(
            _config(https="tcp:0:interface=127.0.0.1", submission="tcp:0:interface=127.0.0.1"),
            "reuseport",
            3,
        )
        self.assertEqual(list(bound), ["submission", "https"])
        for copies in bound.values():
            self.assertEqual(len(copies), 3)
            self.assertEqual(len({s.getsockname() for s in copies}), 1)
            self.assertTrue(
                all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in copies)
            )

    def test_dns_pair(self) -> None:
        """DNS gets a TCP and a UDP socket on one port; a shared socket is one copy."""
        bound = self.bind(_config(dns="tcp:0:interface=127.0.0.1"), "shared", 2)
        (tcp,), (udp,) = bound["dns"], bound["dns-udp"]
        self.assertEqual(tcp.type, socket.SOCK_STREAM)
        self.assertEqual(udp.type, socket.SOCK_DGRAM)
        self.assertEqual(tcp.getsockname(), udp.getsockname())

    def test_port_in_use(self) -> None:
        """A port another process holds is a ListenError naming the listen key, as a
        single Rail says it."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            config = _config(
                https="tcp:0:interface=127.0.0.1", inbound=f"tcp:{port}:interface=127.0.0.1"
            )
            with self.assertRaises(ListenError) as raised:
                bind_all(config, "shared", 2)
        self.assertEqual(
            str(raised.exception),
            f"listen.inbound: cannot listen on 127.0.0.1:{port}: Address already in use",
        )
