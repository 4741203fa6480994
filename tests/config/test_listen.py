"""Tests for ``rail.config.listen``: Twisted endpoint descriptions restricted to TCP."""

from __future__ import annotations

from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from rail.config.listen import ListenSpec, parse_listen

EVERY_IPV4 = "0.0.0.0"  # noqa: S104 - exposing a port must stay possible when chosen


class ParseListenTests(SynchronousTestCase):
    def test_accepted(self) -> None:
        """Port positional or as port=, optional interface and backlog, Twisted's backslash
        escapes for IPv6 colons, and loopback as the default interface of each family."""
        table = {
            "tcp:443": ListenSpec(kind="tcp", port=443, interface="127.0.0.1", backlog=511),
            "tcp6:443": ListenSpec(kind="tcp6", port=443, interface="::1", backlog=511),
            "tcp:0": ListenSpec(kind="tcp", port=0, interface="127.0.0.1", backlog=511),
            "tcp:65535": ListenSpec(kind="tcp", port=65535, interface="127.0.0.1", backlog=511),
            "tcp:443:interface=0.0.0.0": ListenSpec(
                kind="tcp", port=443, interface=EVERY_IPV4, backlog=511
            ),
            "tcp:port=443:interface=10.0.0.1": ListenSpec(
                kind="tcp", port=443, interface="10.0.0.1", backlog=511
            ),
            "tcp:interface=10.0.0.1:port=25:backlog=7": ListenSpec(
                kind="tcp", port=25, interface="10.0.0.1", backlog=7
            ),
            r"tcp6:443:interface=\:\:1": ListenSpec(
                kind="tcp6", port=443, interface="::1", backlog=511
            ),
            r"tcp6:443:interface=\:\:": ListenSpec(
                kind="tcp6", port=443, interface="::", backlog=511
            ),
            r"tcp6:53:interface=2001\:db8\:0\:0\:0\:0\:0\:1": ListenSpec(
                kind="tcp6", port=53, interface="2001:db8::1", backlog=511
            ),
            "tcp:80:backlog=65535": ListenSpec(
                kind="tcp", port=80, interface="127.0.0.1", backlog=65535
            ),
        }
        self.assertEqual({text: parse_listen(text) for text in table}, table)

    def test_errors(self) -> None:
        """Each malformed or unsupported description is refused with a message that says
        what to write instead."""
        table = {
            "": "expected an endpoint description like \"tcp:443:interface=0.0.0.0\", got ''",
            "ssl:443": "unsupported endpoint type 'ssl': give a tcp: or tcp6: description like"
            ' "tcp:443:interface=0.0.0.0" (Rail adds TLS itself)',
            "unix:/run/rail.sock": "unsupported endpoint type 'unix': give a tcp: or tcp6:"
            ' description like "tcp:443:interface=0.0.0.0" (Rail adds TLS itself)',
            "TCP:443": "unsupported endpoint type 'TCP': give a tcp: or tcp6: description like"
            ' "tcp:443:interface=0.0.0.0" (Rail adds TLS itself)',
            "443": 'missing endpoint type: write "tcp:443"',
            "port=443": 'missing endpoint type: write something like "tcp:443:interface=0.0.0.0"',
            "tcp": 'missing port: write something like "tcp:443:interface=0.0.0.0"',
            "tcp:": "port must be a number from 0 to 65535, got ''",
            "tcp:https": "port must be a number from 0 to 65535, got 'https'",
            "tcp:65536": "port must be a number from 0 to 65535, got '65536'",
            "tcp:-1": "port must be a number from 0 to 65535, got '-1'",
            "tcp:443:port=443": "port given twice",
            "tcp:443:backlog=0": "backlog must be a number from 1 to 65535, got '0'",
            "tcp:443:backlog=x": "backlog must be a number from 1 to 65535, got 'x'",
            "tcp:443:interface=1.2.3.4:interface=5.6.7.8": "interface given twice",
            "tcp:443:ssl=yes": "unknown parameter 'ssl': expected one of port, interface, backlog",
            "tcp:443:0.0.0.0": "expected name=value after the port, got '0.0.0.0'"
            " (to choose the address, write interface=0.0.0.0)",
            "tcp:port=443:x": "expected name=value after a name=value, got 'x'",
            "tcp:443:interface=": "interface must not be empty: write interface=0.0.0.0 to"
            " listen on every IPv4 address",
            "tcp6:443:interface=": r"interface must not be empty: write interface=\:\: to"
            " listen on every IPv6 address",
            "tcp:443:interface=localhost": "interface must be an IP address, got 'localhost'",
            "tcp:443:interface=127.0.0.01": "interface must be an IP address, got '127.0.0.01'",
            r"tcp:443:interface=\:\:1": "interface must be an IPv4 address for tcp:, got '::1'"
            " (use tcp6: for IPv6)",
            "tcp6:443:interface=127.0.0.1": "interface must be an IPv6 address for tcp6:, got"
            " '127.0.0.1' (use tcp: for IPv4)",
            "tcp:443\\": "endpoint description ends with a lone backslash: 'tcp:443\\\\'",
        }
        messages = {}
        for text in table:
            try:
                messages[text] = f"no error: {parse_listen(text)!r}"
            except ValueError as e:
                messages[text] = str(e)
        self.assertEqual(messages, table)

    def test_unescaped_ipv6_interface(self) -> None:
        """An IPv6 address written without escapes is split at its colons, as Twisted
        would, so it is refused instead of silently binding somewhere else."""
        self.assertRaises(ValueError, parse_listen, "tcp6:443:interface=::1")

    def test_interface_canonical(self) -> None:
        """The interface is stored in its canonical form, whatever spelling was given."""
        spec = parse_listen(r"tcp6:443:interface=0\:0\:0\:0\:0\:0\:0\:1")
        self.assertEqual(spec.interface, "::1")


class DescriptionTests(SynchronousTestCase):
    def test_description(self) -> None:
        """The description is Twisted's syntax with colons escaped, and names the backlog
        only when it is not Rail's default of 511."""
        table = {
            ListenSpec(kind="tcp", port=443, interface="127.0.0.1"): "tcp:443:interface=127.0.0.1",
            ListenSpec(kind="tcp6", port=443, interface="::1"): r"tcp6:443:interface=\:\:1",
            ListenSpec(
                kind="tcp", port=0, interface=EVERY_IPV4, backlog=5
            ): "tcp:0:interface=0.0.0.0:backlog=5",
        }
        self.assertEqual({spec: spec.description for spec in table}, table)

    def test_round_trip(self) -> None:
        """Parsing a spec's description gives the same spec back."""
        for text in ["tcp:443", r"tcp6:25:interface=2001\:db8\:\:1:backlog=100", "tcp:0"]:
            spec = parse_listen(text)
            self.assertEqual(parse_listen(spec.description), spec)

    def test_twisted_agrees(self) -> None:
        """Twisted's own ``serverFromString`` binds the description to the same port,
        interface and backlog (tests may import Twisted; the config package may not). With
        Rail's default backlog the description leaves it out, and Twisted would use its own
        (50): Rail binds with ``spec.backlog``, never from the description."""
        specs = [
            ListenSpec(kind="tcp", port=443, interface="10.1.2.3", backlog=50),
            ListenSpec(kind="tcp6", port=8443, interface="fe80::1", backlog=9),
        ]
        reactor = MemoryReactor()
        for spec in specs:
            serverFromString(reactor, spec.description).listen(Factory())
        self.assertEqual(
            [(port, backlog, interface) for port, _, backlog, interface in reactor.tcpServers],
            [(443, 50, "10.1.2.3"), (8443, 9, "fe80::1")],
        )
