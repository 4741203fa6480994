"""Configuration of connection bounds and HTTP request deadlines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rail.config import ConfigError, parse_config
from rail.config.schema import Connections, ConnectionsPerIP, Limits

BASE = Path("/etc/rail")


def _parse(limits: dict[str, Any]) -> Limits:
    data = {"hostname": "mail.example.com", "tls": {"self_signed": True}, "limits": limits}
    return parse_config(data, BASE).limits


def _problems(limits: dict[str, Any]) -> list[str]:
    try:
        _parse(limits)
    except ConfigError as e:
        return [str(problem) for problem in e.problems]
    raise AssertionError(f"{limits!r} was accepted")


class ConnectionsConfigTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """Unset, the bounds are derived (reserve, cap), 100/100/16/16 per address, /64,
        eviction after 1 s of silence, 10 s TLS handshakes, 10 s headers, bodies at
        1 KB/s after 10 s."""
        limits = _parse({})
        self.assertEqual(
            limits.connections,
            Connections(
                reserve=None,
                max_per_listener=None,
                per_ip=ConnectionsPerIP(https=100, submission=100, http=16, dns=16),
                ipv6_prefix=64,
                evict_idle=1.0,
                tls_handshake_timeout=10.0,
            ),
        )
        self.assertEqual(
            (limits.http_header_timeout, limits.http_body_grace, limits.http_min_body_rate),
            (10.0, 10.0, 1024),
        )

    def test_every_key(self) -> None:
        """Every key is read, in its unit; ``evict_idle: null`` turns eviction off."""
        limits = _parse(
            {
                "http_header_timeout": "20s",
                "http_body_grace": "0s",
                "http_min_body_rate": "10KB",
                "connections": {
                    "reserve": 2000,
                    "max_per_listener": 5000,
                    "per_ip": {"https": 1, "submission": 2, "http": 3, "dns": 4},
                    "ipv6_prefix": 48,
                    "evict_idle": None,
                    "tls_handshake_timeout": "5s",
                },
            }
        )
        self.assertEqual(
            limits.connections,
            Connections(
                reserve=2000,
                max_per_listener=5000,
                per_ip=ConnectionsPerIP(https=1, submission=2, http=3, dns=4),
                ipv6_prefix=48,
                evict_idle=None,
                tls_handshake_timeout=5.0,
            ),
        )
        self.assertEqual(
            (limits.http_header_timeout, limits.http_body_grace, limits.http_min_body_rate),
            (20.0, 0.0, 10 * 1024),
        )

    def test_problems_are_path_qualified(self) -> None:
        """Out-of-range and unknown values are reported at their full paths, all at once."""
        self.assertEqual(
            _problems(
                {
                    "http_header_timeout": "0s",
                    "connections": {
                        "max_per_listener": 2,
                        "per_ip": {"https": 0, "smtp": 5},
                        "ipv6_prefix": 16,
                        "tls_handshake_timeout": "1h",
                    },
                }
            ),
            [
                'limits.http_header_timeout: expected a duration from "1s" to "10m", got \'0s\'',
                "limits.connections.max_per_listener: expected a number from 16 to 10000000, got 2",
                "limits.connections.per_ip.https: expected a number from 1 to 1000000, got 0",
                "limits.connections.per_ip.smtp: unknown key",
                "limits.connections.ipv6_prefix: expected a number from 32 to 128, got 16",
                "limits.connections.tls_handshake_timeout: expected a duration from"
                ' "1s" to "10m", got \'1h\'',
            ],
        )
